"""The request-side check of the URL contract: signature first, then grammar, then expiry."""

from __future__ import annotations

from collections.abc import Mapping
from re import Pattern

from .costs import check_costs
from .errors import BadSignature, Expired, ExpiryRequired, LifetimeTooLong, MalformedUrl, UnsafeNotAllowed
from .grammar import parse, split_signed
from .params import EXPIRES, VERSION, Params
from .signing import Signer


def check_filters(params: Params, known: Mapping[str, Pattern[str]]) -> None:
    """Every filter must be one the server runs, with arguments it reads whole: a filter the
    server would skip (``Expires(1)``, ``fill(expires(1))``) must not look, to whoever signed it,
    like a restriction that holds. ``known``: name -> the pattern of that filter's whole text."""
    for item in params.filters:
        if item.name in (EXPIRES, VERSION):
            continue  # ours, read by the grammar itself
        pattern = known.get(item.name)
        if pattern is None:
            raise MalformedUrl(f"unknown filter {item.name}()")
        if not pattern.fullmatch(str(item)):
            raise MalformedUrl(f"bad arguments for {item.name}()")


def verify_request(raw_path: str, *, signer: Signer, now: float, allow_unsafe: bool = False,
                   require_expires: bool = False, max_lifetime: int = 0,
                   known_filters: Mapping[str, Pattern[str]] | None = None, max_filters: int = 0) -> Params:
    """Check a request path (``/<signature>/<path>``, as received, no query) and return its Params.

    The signature is checked on the raw path before any option is read, so a percent-encoded or
    otherwise re-spelled variant of a signed path is refused. Raises, in this order:
    MalformedUrl (shape), UnsafeNotAllowed, BadSignature, MalformedUrl (grammar, repeated or bad
    ``expires()``), Expired (``expires_at <= now``), ExpiryRequired (no ``expires()`` while
    ``require_expires``), LifetimeTooLong (``max_lifetime > 0`` and more than that many seconds
    left). Expiry rules apply to ``unsafe`` URLs too, when those are allowed. With
    ``known_filters``, MalformedUrl for a filter not in it or with arguments its pattern does not
    read whole (:func:`check_filters`), and TooCostly over a cost bound (:mod:`.costs`; at most
    ``max_filters`` filters, 0: no bound on their number), before the expiry is judged.
    """
    signature, rest = split_signed(raw_path)
    if signature == "unsafe":
        if not allow_unsafe:
            raise UnsafeNotAllowed("unsafe URLs are disabled")
    elif not signer.verify(signature, rest):
        raise BadSignature("signature does not match the path")
    params = parse(rest)
    _ = params.format  # MalformedUrl for a format() Thumbor does not write
    if known_filters is not None:
        check_filters(params, known_filters)
        check_costs(params, max_filters)
    expires_at = params.expires_at
    if expires_at is None:
        if require_expires:
            raise ExpiryRequired("this server only serves links with expires()")
    elif expires_at <= now:
        raise Expired(f"link expired at {expires_at}")
    elif max_lifetime > 0 and expires_at - now > max_lifetime:
        raise LifetimeTooLong(f"link lives more than {max_lifetime}s")
    return params


def cache_max_age(params: Params, now: float, max_age: int) -> int | None:
    """For an expiring link: ``min(whole seconds left, max_age)``, never negative. None otherwise."""
    expires_at = params.expires_at
    if expires_at is None:
        return None
    return max(0, min(int(expires_at - now), max_age))

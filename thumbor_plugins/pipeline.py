"""The request pipeline, pure (no Thumbor, no tornado, no S3): what the server decides about an
image request before anything is loaded, and the cache policy of its answer.

    decide(path, accept, settings, now, known_filters) -> Decision      or raises Refusal
      1. verify   signature, grammar, filters and their costs, expiry     (403 / 400 / 410)
      2. presets  IMGSTACK_ONLY_PRESETS                                    (403)
      3. locate   bucket allow-list, key checks, no S3 call               (400 / 404)
      4. name     negotiated output format, result-storage key
    cache_control(decision, settings, now, temporary) -> the Cache-Control value
    varies(decision, settings)                        -> whether to send Vary: Accept
    last_modified(stored_at, settings), not_modified(last_modified, headers) -> a stored result's 304

It reads :class:`~thumbor_plugins.settings.Settings` (typed, checked once at start-up) and, from
Thumbor, only the filters it runs (``known_filters``: name -> the pattern of its arguments).
:class:`Refusal` is the one error: HTTP status, a reason word for logs and metrics, an internal
message for the log, and :func:`public_text` for the client (fixed words, never the request's own
text). The image handler (``thumbor_plugins.app``) is the adapter that runs this and hands a
:class:`Decision` to Thumbor's rendering.
"""

from __future__ import annotations

import datetime
import email.utils
from collections.abc import Mapping
from dataclasses import dataclass
from re import Pattern

from . import derived, presets, sources
from .settings import Settings
from .urls import Params, UrlError, cache_max_age, generate, verify_request

__all__ = [
    "ERROR_TEXT",
    "REASON_TEXT",
    "Decision",
    "Refusal",
    "cache_control",
    "decide",
    "last_modified",
    "not_modified",
    "public_text",
    "varies",
]

#: the public words of an error answer, by status
ERROR_TEXT = {
    400: "bad request",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    410: "link expired",
    413: "original too large",
    422: "image too large",
    429: "too many requests",
    500: "internal error",
    502: "storage unavailable",
    503: "overloaded, retry later",
    504: "storage timed out",
}
#: reason words whose public words say more than the status's
REASON_TEXT = {
    "bad_signature": "bad signature",
    "expired": "link expired",
    "unsafe_not_allowed": "unsigned links are not allowed",
    "expiry_required": "link must expire",
    "lifetime_too_long": "link lifetime too long",
    "not_a_preset": "only presets are served",
    "malformed": "malformed URL",
    "bad_source": "bad image path",
    "too_large": "original too large",
    "too_many_pixels": "image too large",
    "too_costly": "too costly to render",
    "render_timeout": "render took too long, retry later",
}


def public_text(status: int, reason: str | None) -> str:
    """``403 bad signature``: a short, fixed line a person can read (no input reflected)."""
    return f"{status} {REASON_TEXT.get(reason or '') or ERROR_TEXT.get(status, 'error')}\n"


class Refusal(Exception):
    """A request the pipeline refuses: ``status``, ``reason`` (a word for logs and metrics), the
    message (for the log; may name the request's parts, never its signature)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason

    @property
    def public(self) -> str:
        return public_text(self.status, self.reason)


@dataclass(frozen=True, slots=True)
class Decision:
    """An image request the pipeline accepted: what to render or look up, and where it lives."""

    params: Params
    source: sources.Source
    #: negotiated output format (``auto``: the source's own)
    format: str
    derived_key: str
    expires_at: int | None
    #: the generated path without the signature and expires(): the result's identity
    canonical: str = ""
    unsafe: bool = False

    @property
    def negotiated(self) -> bool:
        """The format came from ``Accept`` (the answer varies by it), not from ``format()``."""
        return self.params.format is None


def decide(path: str, accept: str, settings: Settings, now: float,
           known_filters: Mapping[str, Pattern[str]] | None = None) -> Decision:
    """The decision for an image request's raw path (``/<signature>/<options>/<image>``, as
    received) and ``Accept`` header. ``known_filters``: the filters the renderer runs (None: any
    filter the grammar reads). Raises :class:`Refusal`; nothing is loaded either way."""
    try:
        params = verify_request(
            path, signer=settings.signer(), now=now, allow_unsafe=settings.allow_unsafe_url,
            require_expires=settings.require_expires, max_lifetime=settings.max_link_lifetime,
            known_filters=known_filters, max_filters=settings.max_filters,
        )
    except UrlError as error:
        raise Refusal(error.status, error.reason, str(error)) from None
    if settings.only_presets and presets.matches(params, settings.presets) is None:
        raise Refusal(403, "not_a_preset", "only presets are served (IMGSTACK_ONLY_PRESETS)")
    try:
        source = sources.locate_for(params.image, settings)
    except sources.SourceError as error:
        raise Refusal(error.status, "bad_source" if error.status == 400 else "not_found", str(error)) from None
    fmt = derived.negotiate(params.format, accept, auto_avif=settings.auto_avif, auto_webp=settings.auto_webp)
    canonical = generate(params.without_expires())
    return Decision(params=params, source=source, format=fmt, derived_key=derived.derived_key(source, canonical, fmt),
                    expires_at=params.expires_at, canonical=canonical, unsafe=path.startswith("/unsafe/"))


def _asked_max_age(params: Params) -> int | None:
    """The smallest ``max_age(n)`` of the URL; None without one."""
    asked = [int(f.args) for f in params.filters if f.name == "max_age" and f.args.strip().isdigit()]
    return min(asked) if asked else None


def cache_control(decision: Decision, settings: Settings, now: float, *, temporary: bool = False) -> str:
    """Expiring link: private, never cacheable past its expiry. A stand-in (``temporary``: the
    fallback image, a detection error): MAX_AGE_TEMP_IMAGE. Permanent versioned link: a year,
    immutable. Otherwise MAX_AGE. A signed ``max_age(n)`` lowers any of these to n, never raises
    them (read from the URL, so a hit, which runs no filter, is answered the same)."""
    max_age = settings.max_age_temp_image if temporary else settings.max_age
    asked = _asked_max_age(decision.params)
    if asked is not None:
        max_age = min(max_age, asked)
    left = cache_max_age(decision.params, now, max_age)
    if left is not None:
        return f"private, max-age={left}"
    if decision.params.version and not temporary and asked is None:
        return f"public, max-age={settings.versioned_max_age}, immutable"
    return f"public, max-age={max_age}"


def varies(decision: Decision, settings: Settings) -> bool:
    """The answer depends on ``Accept`` (``Vary: Accept``)."""
    return decision.negotiated and (settings.auto_avif or settings.auto_webp)


def last_modified(stored_at: datetime.datetime | None, settings: Settings) -> datetime.datetime | None:
    """The ``Last-Modified`` of a stored result (UTC, whole seconds; a naive time is UTC), or None
    when none is sent (SEND_IF_MODIFIED_LAST_MODIFIED_HEADERS off, or no time known)."""
    if not settings.send_if_modified_last_modified_headers or stored_at is None:
        return None
    if stored_at.tzinfo is None:
        stored_at = stored_at.replace(tzinfo=datetime.UTC)
    return stored_at.astimezone(datetime.UTC).replace(microsecond=0)


def not_modified(modified: datetime.datetime, headers: Mapping[str, str]) -> bool:
    """Whether the client's copy is current by ``If-Modified-Since``. ``If-None-Match``, when
    sent, is the validator that counts (RFC 9110 13.2.2; the server checks it against the ETag);
    an unparsable date is ignored, as RFC 9110 asks."""
    header = headers.get("If-Modified-Since")
    if not header or "If-None-Match" in headers:
        return False
    try:
        since = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError, OverflowError):
        return False
    if since.tzinfo is None:
        since = since.replace(tzinfo=datetime.UTC)
    return modified <= since

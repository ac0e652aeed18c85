"""Making signed URLs: the client side of the URL contract (CLI, apps, tests)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from urllib.parse import quote

from .errors import MalformedUrl
from .grammar import generate, parse, split_filters
from .params import EXPIRES, VERSION, VERSION_TOKEN, Filter, Params
from .signing import Signer


def _user_filters(filters: Sequence[str] | str) -> tuple[Filter, ...]:
    texts = [filters] if isinstance(filters, str) else list(filters)
    try:
        parsed = tuple(f for text in texts if text.strip() for f in split_filters(text.strip()))
    except MalformedUrl as exc:
        raise ValueError(str(exc)) from None
    for f in parsed:
        if f.name in (EXPIRES, VERSION):
            raise ValueError(f"{f.name}() is set by expires_in/expires_at/version, not filters")
    return parsed


def _check_size(name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or value < 0):
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")


def _unambiguous_path(params: Params) -> str:
    """Generate the path, making sure Thumbor will read back exactly ``params``.

    An image whose first segment looks like an option (a bucket named ``smart`` or ``left``, a
    key ``300x200/a.jpg`` under a fixed bucket) would be read as that option. Percent-encoding
    its first character keeps it the image; the loader decodes it like any other escape.
    """
    path = generate(params)
    if parse(path) == params:
        return path
    escaped = dataclasses.replace(params, image=f"%{ord(params.image[0]):02X}{params.image[1:]}")
    path = generate(escaped)
    if parse(path) != escaped:
        raise ValueError(f"cannot write an unambiguous URL for {params!r}")
    return path


def build_url(image: str, *, key: str | bytes, base: str = "", width: int | None = None,
              height: int | None = None, fit_in: bool = False, smart: bool = False,
              filters: Sequence[str] | str = (), expires_in: int | None = None,
              expires_at: int | None = None, version: str | None = None, algorithm: str = "sha1",
              now: float | None = None, params: Params | None = None) -> str:
    """A signed URL: ``base.rstrip("/") + "/" + signature + "/" + canonical path``.

    ``image`` is ``bucket/key`` decoded; it is percent-encoded here (``quote(safe="/")``).
    ``filters`` is ``"format(webp):quality(80)"`` text or a list of such texts; ``expires()``
    (from ``expires_in`` seconds after ``now``, or ``expires_at``) and ``v(version)`` are appended
    after them. ``params``, when given, replaces width/height/fit_in/smart/filters (its own
    ``expires()``/``v()`` are replaced by ours). ValueError on any inconsistent argument.
    """
    if not image:
        raise ValueError("image is required")
    if expires_in is not None and expires_at is not None:
        raise ValueError("give expires_in or expires_at, not both")
    if expires_in is not None:
        if expires_in <= 0:
            raise ValueError("expires_in must be > 0 seconds")
        expires_at = int((time.time() if now is None else now) + expires_in)
    if expires_at is not None and expires_at < 0:
        raise ValueError("expires_at must be unix seconds")
    if version is not None and not VERSION_TOKEN.fullmatch(version):
        raise ValueError(f"version must match {VERSION_TOKEN.pattern}, got {version!r}")

    if params is not None:
        if width is not None or height is not None or fit_in or smart or filters:
            raise ValueError("give params or width/height/fit_in/smart/filters, not both")
        base_filters = tuple(f for f in params.filters if f.name not in (EXPIRES, VERSION))
    else:
        _check_size("width", width)
        _check_size("height", height)
        if fit_in and not (width or height):
            raise ValueError("fit_in needs a width and/or a height")
        params = Params(image=image, fit_in="fit-in" if fit_in else None, width=width,
                        height=height, smart=smart)
        base_filters = _user_filters(filters)

    ours = []
    if expires_at is not None:
        ours.append(Filter(EXPIRES, str(int(expires_at))))
    if version is not None:
        ours.append(Filter(VERSION, version))
    params = dataclasses.replace(params, image=quote(image, safe="/"),
                                 filters=base_filters + tuple(ours))
    path = _unambiguous_path(params)
    signature = Signer([key], algorithm).sign(path)
    return f"{base.rstrip('/')}/{signature}/{path}"

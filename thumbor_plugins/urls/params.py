"""The options of one Thumbor URL as a value: what :func:`grammar.parse` returns and
:func:`grammar.generate` writes. Two filters are ours, not Thumbor's: ``expires(<unix seconds>)``
(link expiry) and ``v(<token>)`` (cache-busting version); both live in the signed path so nobody
can change them, and neither is handed to Thumbor's filter factory."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Literal

from .errors import MalformedUrl

#: the formats Thumbor's format() filter writes
FORMATS = frozenset({"jpeg", "jpg", "png", "webp", "gif", "avif", "heic", "heif"})
EXPIRES = "expires"
VERSION = "v"

# Digits only (str.isdigit would accept "²"); 12 digits reach far past any sane expiry.
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
# A version token must not be able to close the filter or start a new one.
VERSION_TOKEN = re.compile(r"[A-Za-z0-9._~-]{1,128}")

Size = int | Literal["orig"] | None


@dataclass(frozen=True)
class Filter:
    """One ``name(args)`` item of ``filters:``; ``args`` is the raw text between the parens."""

    name: str
    args: str = ""

    def __str__(self) -> str:
        return f"{self.name}({self.args})"


@dataclass(frozen=True)
class Params:
    """Everything Thumbor's grammar can say, as written in the URL (nothing normalised away).

    ``image`` is in its percent-encoded URL form (``images/a%20b.jpg``). ``None`` means "absent
    from the URL": ``width=0`` (``0x200``) and ``width=None`` (``x200``) are different URLs.
    ``width``/``height`` are ints >= 0 or ``"orig"``; the sign lives in ``flip_horizontal``/
    ``flip_vertical``. ``crop`` is ``(left, top, right, bottom)``.
    """

    image: str
    debug: bool = False
    meta: bool = False
    trim: str | None = None
    crop: tuple[int, int, int, int] | None = None
    fit_in: str | None = None
    width: Size = None
    height: Size = None
    flip_horizontal: bool = False
    flip_vertical: bool = False
    halign: str | None = None
    valign: str | None = None
    smart: bool = False
    filters: tuple[Filter, ...] = ()

    def __post_init__(self) -> None:
        # Accept any sequence but store a tuple, so Params stays hashable and comparable.
        object.__setattr__(self, "filters", tuple(self.filters))
        if self.crop is not None:
            object.__setattr__(self, "crop", tuple(self.crop))

    def _only(self, name: str) -> str | None:
        found = [f.args for f in self.filters if f.name == name]
        if len(found) > 1:
            raise MalformedUrl(f"more than one {name}() filter")
        return found[0] if found else None

    @property
    def expires_at(self) -> int | None:
        """Unix seconds from ``expires()``; None for a permanent link. MalformedUrl if invalid."""
        text = self._only(EXPIRES)
        if text is None:
            return None
        if not _UNIX_SECONDS.fullmatch(text):
            raise MalformedUrl(f"expires() wants unix seconds, got {text!r}")
        return int(text)

    @property
    def version(self) -> str | None:
        """The token of ``v()``, or None. MalformedUrl if invalid."""
        token = self._only(VERSION)
        if token is not None and not VERSION_TOKEN.fullmatch(token):
            raise MalformedUrl(f"v() wants a token of [A-Za-z0-9._~-], got {token!r}")
        return token

    @property
    def format(self) -> str | None:
        """The argument of ``format()``; the last one wins, as when Thumbor runs them in order."""
        found = [f.args for f in self.filters if f.name == "format"]
        if not found:
            return None
        if found[-1].strip().lower() not in FORMATS:
            # it names the derived key and the response type: only formats Thumbor writes
            raise MalformedUrl(f"format({found[-1]}) is not one of {', '.join(sorted(FORMATS))}")
        return found[-1]

    def without_expires(self) -> Params:
        """The same options without ``expires()`` (``v()`` stays): the result-storage identity."""
        return dataclasses.replace(self, filters=tuple(f for f in self.filters if f.name != EXPIRES))

    def thumbor_filters(self) -> str:
        """The ``filters`` text for Thumbor's filter factory, without our ``expires()``/``v()``."""
        return ":".join(str(f) for f in self.filters if f.name not in (EXPIRES, VERSION))

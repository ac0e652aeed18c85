"""The one URL contract of imgstack, shared by server and clients: Thumbor's grammar
(:mod:`.grammar`), its signature (:mod:`.signing`), our ``expires()``/``v()`` filters
(:mod:`.params`), the request check (:mod:`.verify`) and the URL builder (:mod:`.build`).

Pure: only the standard library, so ``imgstack url`` and client apps need neither Thumbor nor an
S3 SDK. Errors carry their HTTP status (see :mod:`.errors`).
"""

from .build import build_url
from .errors import (
    BadSignature,
    Expired,
    ExpiryRequired,
    LifetimeTooLong,
    MalformedUrl,
    NotAPreset,
    UnsafeNotAllowed,
    UrlError,
)
from .grammar import generate, parse, split_signed
from .params import Filter, Params
from .signing import Signer
from .verify import cache_max_age, verify_request

__all__ = [
    "BadSignature",
    "Expired",
    "ExpiryRequired",
    "Filter",
    "LifetimeTooLong",
    "MalformedUrl",
    "NotAPreset",
    "Params",
    "Signer",
    "UnsafeNotAllowed",
    "UrlError",
    "build_url",
    "cache_max_age",
    "generate",
    "parse",
    "split_signed",
    "verify_request",
]

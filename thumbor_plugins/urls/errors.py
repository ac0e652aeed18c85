"""Errors of the URL contract. Each carries the HTTP status the server answers with and a short
machine word (``reason``) for metrics and logs::

    UrlError                    (Exception; status, reason)
    ├── MalformedUrl            400 malformed           not Thumbor's grammar, bad filter syntax,
    │                                                   two expires() or v() filters
    ├── TooCostly               400 too_costly          over a cost bound (too many filters, blur
    │                                                   radius, ...: urls/costs.py)
    ├── BadSignature            403 bad_signature       no key signed exactly this path
    ├── UnsafeNotAllowed        403 unsafe_not_allowed  /unsafe/ while unsafe URLs are disabled
    ├── ExpiryRequired          403 expiry_required     no expires() while the operator requires one
    ├── LifetimeTooLong         403 lifetime_too_long   expires() further away than the allowed maximum
    ├── NotAPreset              403 not_a_preset        options outside the operator's presets
    └── Expired                 410 expired             expires() is in the past

The message is for humans (logs, CLI); code branches on the class or ``reason``, never on the text.
"""

from __future__ import annotations


class UrlError(Exception):
    """A request URL refused by the URL contract."""

    status: int = 400
    reason: str = "malformed"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.reason)


class MalformedUrl(UrlError):
    status, reason = 400, "malformed"


class BadSignature(UrlError):
    status, reason = 403, "bad_signature"


class UnsafeNotAllowed(UrlError):
    status, reason = 403, "unsafe_not_allowed"


class Expired(UrlError):
    status, reason = 410, "expired"


class ExpiryRequired(UrlError):
    status, reason = 403, "expiry_required"


class LifetimeTooLong(UrlError):
    status, reason = 403, "lifetime_too_long"


class NotAPreset(UrlError):
    status, reason = 403, "not_a_preset"


class TooCostly(UrlError):
    status, reason = 400, "too_costly"

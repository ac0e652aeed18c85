"""The request pipeline, pure (no Thumbor, no tornado, no S3): what the server decides about an
image request before anything is loaded, and the cache policy of its answer.

    decide(path, accept, settings, now) -> Decision      or raises Refusal
      1. verify   signature, grammar, filters and their costs, expiry     (403 / 400 / 410)
      2. presets  IMGSTACK_ONLY_PRESETS                                    (403)
      3. locate   bucket allow-list, key checks, no S3 call               (400 / 404)
      4. name     negotiated output format, result-storage key
    cache_control(decision, settings, now, temporary) -> the Cache-Control value

:class:`Settings` holds what it reads, typed, built and checked once at start-up
(:meth:`Settings.from_config`). :class:`Refusal` is the one error: HTTP status, a reason word for
logs and metrics, an internal message for the log, and :func:`public_text` for the client (fixed
words, never the request's own text). The Thumbor handler (``thumbor_plugins.app``) is the adapter
that runs this and hands a :class:`Decision` to Thumbor's rendering.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from re import Pattern
from typing import Any

from . import derived, presets, sources
from .urls import Params, Signer, UrlError, cache_max_age, generate, verify_request

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


@dataclass(frozen=True)
class Settings:
    """What the pipeline reads, typed (built from the config once: :meth:`from_config`)."""

    signer: Signer
    known_filters: Mapping[str, Pattern[str]] | None = None
    allow_unsafe: bool = False
    require_expires: bool = False
    max_lifetime: int = 0
    max_filters: int = 0
    #: IMGSTACK_ONLY_PRESETS: the presets a URL must match; None: any URL
    only_presets: Mapping[str, Params] | None = None
    allowed_buckets: tuple[str, ...] = ("images",)
    fixed_bucket: str | None = None
    root_path: str = ""
    auto_avif: bool = True
    auto_webp: bool = True
    max_age: int = 86400
    max_age_temp: int = 0
    versioned_max_age: int = 31536000

    @classmethod
    def from_config(cls, config: Any, signer: Signer, known_filters: Mapping[str, Pattern[str]] | None) -> Settings:
        """From a Thumbor config (our names, the tc_aws aliases: :func:`sources.locate_options`)."""
        return cls(
            signer=signer,
            known_filters=known_filters,
            allow_unsafe=bool(config.ALLOW_UNSAFE_URL),
            require_expires=bool(config.IMGSTACK_REQUIRE_EXPIRES),
            max_lifetime=int(config.IMGSTACK_MAX_LINK_LIFETIME or 0),
            max_filters=int(config.IMGSTACK_MAX_FILTERS or 0),
            only_presets=presets.load(config.IMGSTACK_PRESETS_FILE) if config.IMGSTACK_ONLY_PRESETS else None,
            **sources.locate_options(config),
            auto_avif=bool(config.AUTO_AVIF),
            auto_webp=bool(config.AUTO_WEBP),
            max_age=int(config.MAX_AGE or 0),
            max_age_temp=int(config.MAX_AGE_TEMP_IMAGE or 0),
            versioned_max_age=int(config.IMGSTACK_VERSIONED_MAX_AGE),
        )


@dataclass(frozen=True)
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


def decide(path: str, accept: str, settings: Settings, now: float) -> Decision:
    """The decision for an image request's raw path (``/<signature>/<options>/<image>``, as
    received) and ``Accept`` header. Raises :class:`Refusal`; nothing is loaded either way."""
    try:
        params = verify_request(
            path, signer=settings.signer, now=now, allow_unsafe=settings.allow_unsafe,
            require_expires=settings.require_expires, max_lifetime=settings.max_lifetime,
            known_filters=settings.known_filters, max_filters=settings.max_filters,
        )
    except UrlError as error:
        raise Refusal(error.status, error.reason, str(error)) from None
    if settings.only_presets is not None and presets.matches(params, settings.only_presets) is None:
        raise Refusal(403, "not_a_preset", "only presets are served (IMGSTACK_ONLY_PRESETS)")
    try:
        source = sources.locate(params.image, allowed_buckets=settings.allowed_buckets,
                                fixed_bucket=settings.fixed_bucket, root_path=settings.root_path)
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
    max_age = settings.max_age_temp if temporary else settings.max_age
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

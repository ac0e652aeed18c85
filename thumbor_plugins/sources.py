"""Where an image URL's source lives in S3: bucket and key from the URL's image part.

Pure (no Thumbor, no S3): the loader, the request handler (to refuse bad sources before any S3
call), the result storage (to prefix derived keys) and the events endpoint all use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from .settings import Settings


class SourceError(ValueError):
    """A source the service must not read: ``status`` is 400 (malformed) or 404 (not allowed)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Source:
    bucket: str
    key: str

    @property
    def prefix(self) -> str:
        """Prefix of every derived object of this original in the derived bucket."""
        return f"{self.bucket}/{self.key}/"


_FORBIDDEN_CHARS = ("\x00", "\r", "\n")


def locate(
    image: str,
    *,
    allowed_buckets: tuple[str, ...] | list[str],
    fixed_bucket: str | None = None,
    root_path: str = "",
) -> Source:
    """The S3 object of a URL's image part. ``image`` is percent-encoded as in the URL and is
    decoded exactly once (so ``%252e%252e`` is the literal key ``%2e%2e``, never ``..``).

    Refuses (400) empty keys, ``.``/``..`` segments, empty segments (``a//b``, ``folder/``: no
    image has one, and a key ending in ``/`` would name a folder's derived prefix), NUL/CR/LF;
    refuses (404) buckets outside ``allowed_buckets``.
    """
    try:
        decoded = unquote(image, errors="strict") if "%" in image else image
    except UnicodeDecodeError:
        raise SourceError("key is not valid UTF-8 once percent-decoded", 400) from None
    if any(ch in decoded for ch in _FORBIDDEN_CHARS):
        raise SourceError("control characters in key", 400)
    decoded = decoded.lstrip("/")
    if fixed_bucket:
        bucket, key = fixed_bucket, decoded
    else:
        bucket, _, key = decoded.partition("/")
    if root_path:
        key = root_path.strip("/") + "/" + key
    if not key:
        raise SourceError("no key in image path", 400)
    if any(segment in (".", "..") for segment in key.split("/")):
        raise SourceError("relative segments in key", 400)
    if "" in key.split("/"):
        raise SourceError("empty segment in key (a//b, a leading or trailing /)", 400)
    if bucket not in allowed_buckets:
        raise SourceError(f"bucket {bucket!r} is not allowed", 404)
    return Source(bucket, key)


def locate_for(image: str, settings: Settings) -> Source:
    """:func:`locate` with the loader's settings (``IMGSTACK_ALLOWED_BUCKETS`` and the fixed
    ``IMGSTACK_BUCKET``, ``IMGSTACK_LOADER_ROOT_PATH``)."""
    return locate(image, allowed_buckets=settings.readable_buckets, fixed_bucket=settings.bucket,
                  root_path=settings.loader_root_path)


def from_config(image: str, config: Any) -> Source:
    """:func:`locate_for` with the settings of a Thumbor config."""
    return locate_for(image, Settings.of(config))


def url_path(bucket: str, key: str) -> str:
    """The image part of a URL for ``bucket/key`` (percent-encoded once)."""
    return quote(f"{bucket}/{key}", safe="/")

"""Content-Type of an upload: our table for images (the same on every machine, unlike the system
``mime.types`` that :mod:`mimetypes` reads), :mod:`mimetypes` for the rest."""

from __future__ import annotations

import mimetypes
from pathlib import PurePosixPath

_KNOWN = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".jpe": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".jxl": "image/jxl",
    ".svg": "image/svg+xml",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".bmp": "image/bmp",
    ".ico": "image/vnd.microsoft.icon",
}
_ENCODED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz",
            "br": "application/x-brotli", "compress": "application/x-compress"}
DEFAULT = "application/octet-stream"


def content_type(rel: str) -> str:
    path = PurePosixPath(rel)
    known = _KNOWN.get(path.suffix.lower())
    if known:
        return known
    # only the suffixes: guess_type() reads a whole name as a URL ('#' and '?' would cut it)
    guessed, encoding = mimetypes.guess_type("f" + "".join(path.suffixes[-2:]).lower(), strict=False)
    if encoding:
        return _ENCODED.get(encoding, DEFAULT)
    return guessed or DEFAULT


def is_image(rel: str) -> bool:
    return content_type(rel).startswith("image/")

"""Where an object or a key prefix is: ``s3://BUCKET/KEY`` (every command's S3 locations) and
``BUCKET/KEY`` (the image part of a URL, decoded), parsed in ONE place. Pure: no SDK, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

SCHEME = "s3://"

#: 3 to 255 letters, digits, dots, hyphens, underscores: today's rules (3-63, lower case) and the
#: legacy us-east-1 names (upper case, underscores) alike; nothing that needs escaping
_BUCKET = re.compile(r"[A-Za-z0-9._-]{3,255}", re.ASCII)


class BadLocation(ValueError):
    """Text that is not ``s3://BUCKET[/KEY]`` (or ``BUCKET[/KEY]``); the message says why."""


@dataclass(frozen=True)
class S3Path:
    """A bucket and a key, or a key prefix: kept exactly as given (it may be empty, or end with
    ``/``). ``str()`` is the canonical ``s3://BUCKET/KEY``, which :meth:`parse` reads back."""

    bucket: str
    key: str = ""

    @classmethod
    def parse(cls, text: str, *, scheme: bool = True) -> S3Path:
        """``s3://BUCKET``, ``s3://BUCKET/`` or ``s3://BUCKET/KEY``; with ``scheme=False``, the same
        without ``s3://`` (a leading ``/`` ignored, as in a URL's image part). Raises
        :class:`BadLocation`."""
        if scheme:
            if not text.startswith(SCHEME):
                raise BadLocation(f"expected s3://BUCKET/KEY, got {text!r}")
            rest = text[len(SCHEME):]
        else:
            rest = text.lstrip("/")
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise BadLocation(f"no bucket in {text!r}")
        if not _BUCKET.fullmatch(bucket):
            raise BadLocation(f"bad bucket name {bucket!r} in {text!r}: 3 to 255 letters, digits, '.', '-' or '_'")
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"


def is_s3(text: str) -> bool:
    """Whether ``text`` is meant as an S3 location (rather than, say, a local folder)."""
    return text.startswith(SCHEME)

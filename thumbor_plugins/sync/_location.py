"""``s3://bucket/prefix/`` locations and the mapping between keys and relative paths."""

from __future__ import annotations

import re

from dataclasses import dataclass

from .errors import Refused

SCHEME = "s3://"


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix that is empty or ends with ``/``."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, text: str) -> "S3Location":
        """``s3://bucket``, ``s3://bucket/`` or ``s3://bucket/a/b[/]`` (the prefix is always a
        folder: ``s3://images/photos`` means the keys under ``photos/``)."""
        if not text.startswith(SCHEME):
            raise Refused(f"not an s3:// location: {text!r}")
        bucket, _, prefix = text[len(SCHEME):].partition("/")
        if len(bucket) < 3 or any(c in bucket for c in " \\"):
            raise Refused(f"bad bucket name in {text!r}")
        prefix = prefix.strip("/")
        if prefix and not rel_is_safe(prefix):
            raise Refused(f"bad prefix in {text!r}: empty, '.' or '..' segments are not allowed")
        return cls(bucket, prefix + "/" if prefix else "")

    def key(self, rel: str) -> str:
        return self.prefix + rel

    def rel(self, key: str) -> str | None:
        """The relative path of ``key``, or None when no file can have that key (a folder
        marker ``a/``, ``a//b``, ``../x``): such objects are left alone in both directions."""
        if not key.startswith(self.prefix):
            return None
        rel = key[len(self.prefix):]
        return rel if rel_is_safe(rel) else None

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}"


_DRIVE = re.compile(r"[A-Za-z]:")


def rel_is_safe(rel: str) -> bool:
    """A relative POSIX path that names a file inside a folder and nothing else, on any OS: no
    empty, ``.`` or ``..`` segment, no backslash (a separator on Windows), no segment starting
    with a drive letter (``C:x`` is drive-relative on Windows), no control characters."""
    if not rel or rel.startswith("/") or "\\" in rel or any(ord(char) < 32 for char in rel):
        return False
    return all(part not in ("", ".", "..") and not _DRIVE.match(part) for part in rel.split("/"))


def is_s3(text: str) -> bool:
    return text.startswith(SCHEME)

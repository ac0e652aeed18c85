"""``s3://bucket/prefix/`` locations and the mapping between keys and relative paths."""

from __future__ import annotations

import re
from dataclasses import dataclass

from thumbor_plugins.s3.location import BadLocation, S3Path, is_s3

from .errors import Refused

__all__ = ["S3Location", "is_s3", "rel_is_safe"]


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix that is empty or ends with ``/``."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, text: str) -> S3Location:
        """``s3://bucket``, ``s3://bucket/`` or ``s3://bucket/a/b[/]`` (the prefix is always a
        folder: ``s3://images/photos`` means the keys under ``photos/``). The text is read by
        :class:`~thumbor_plugins.s3.location.S3Path`, every command's one parser."""
        try:
            path = S3Path.parse(text)
        except BadLocation as error:
            raise Refused(str(error)) from None
        prefix = path.key.strip("/")
        if prefix and not rel_is_safe(prefix):
            raise Refused(f"bad prefix in {text!r}: empty, '.' or '..' segments are not allowed")
        return cls(path.bucket, prefix + "/" if prefix else "")

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
        return str(S3Path(self.bucket, self.prefix))


_DRIVE = re.compile(r"[A-Za-z]:")


def rel_is_safe(rel: str) -> bool:
    """A relative POSIX path that names a file inside a folder and nothing else, on any OS: no
    empty, ``.`` or ``..`` segment, no backslash (a separator on Windows), no segment starting
    with a drive letter (``C:x`` is drive-relative on Windows), no control characters."""
    if not rel or rel.startswith("/") or "\\" in rel or any(ord(char) < 32 for char in rel):
        return False
    return all(part not in ("", ".", "..") and not _DRIVE.match(part) for part in rel.split("/"))

"""Content checks: MD5 of local files (cached by size and mtime), S3 ETags.

An ETag is the MD5 of the content for a single-part upload, and ``md5(part md5s)-N`` for a
multipart one, which depends on the part size the uploader chose. We store the content MD5 in the
object's metadata (``x-amz-meta-md5``) on every upload; a listing does not return metadata, so the
order of checks is (see :meth:`Checker.differs`): size; plain ETag vs local MD5; multipart ETag
recomputed locally for the usual part sizes; and only then one HEAD for the stored MD5.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024
_BLOCK = 1 * MiB
_PLAIN_MD5 = re.compile(r"[0-9a-f]{32}")
_MULTIPART = re.compile(r"(?P<md5>[0-9a-f]{32})-(?P<parts>[0-9]+)")
#: part sizes used by common uploaders (boto3/aws cli 8 MiB, S3 minimum 5 MiB, mc/minio 16 MiB...)
COMMON_PART_SIZES = (5 * MiB, 8 * MiB, 10 * MiB, 15 * MiB, 16 * MiB, 32 * MiB, 64 * MiB, 100 * MiB, 128 * MiB)
#: metadata name of the stored MD5 (sent as the header ``x-amz-meta-md5``)
MD5_METADATA = "md5"


@dataclass(frozen=True)
class LocalFile:
    rel: str
    path: Path
    size: int
    mtime_ns: int = 0


@dataclass(frozen=True)
class RemoteObject:
    rel: str
    key: str
    size: int
    etag: str  # without quotes


def is_plain_md5(etag: str) -> bool:
    return bool(_PLAIN_MD5.fullmatch(etag))


class Hasher:
    """MD5 and multipart ETags of local files. Results are cached by (path, size, mtime), so a
    long-running ``--watch`` does not hash unchanged files again. Thread-safe (a lost race only
    hashes twice)."""

    def __init__(self) -> None:
        self._md5: dict[tuple[str, int, int], str] = {}
        self.files_hashed = 0

    def md5(self, file: LocalFile) -> str:
        cache_key = (str(file.path), file.size, file.mtime_ns)
        cached = self._md5.get(cache_key)
        if cached is None:
            digest = hashlib.md5(usedforsecurity=False)
            with open(file.path, "rb") as f:
                while block := f.read(_BLOCK):
                    digest.update(block)
            cached = self._md5[cache_key] = digest.hexdigest()
            self.files_hashed += 1
        return cached

    def multipart_etags(self, file: LocalFile, parts: int, part_sizes: Iterable[int]) -> set[str]:
        """The multipart ETags of ``file`` in ``parts`` parts, one per plausible part size, in one
        read of the file."""
        if parts == 1:
            return {hashlib.md5(bytes.fromhex(self.md5(file)), usedforsecurity=False).hexdigest() + "-1"}
        sizes = {p for p in part_sizes if p > 0 and -(-file.size // p) == parts}
        # uploaders that split evenly (size / parts rounded up to a MiB)
        even = -(-file.size // parts)
        sizes.add(-(-even // MiB) * MiB)
        sizes = {p for p in sizes if -(-file.size // p) == parts}
        if not sizes:
            return set()
        current = {p: hashlib.md5(usedforsecurity=False) for p in sizes}
        digests: dict[int, list[bytes]] = {p: [] for p in sizes}
        pos = 0
        with open(file.path, "rb") as f:
            while True:
                step = min([_BLOCK] + [p - pos % p for p in sizes])
                block = f.read(step)
                if not block:
                    break
                pos += len(block)
                for p in sizes:
                    current[p].update(block)
                    if pos % p == 0:
                        digests[p].append(current[p].digest())
                        current[p] = hashlib.md5(usedforsecurity=False)
        for p in sizes:
            if pos % p:
                digests[p].append(current[p].digest())
        return {hashlib.md5(b"".join(d), usedforsecurity=False).hexdigest() + f"-{len(d)}"
                for d in digests.values()}


class Checker:
    """Decides whether a local file and an object hold the same content.

    ``stored_md5(obj)`` returns the MD5 kept in the object's metadata (one HEAD request), or None.
    It is called only for objects whose ETag cannot be checked locally.
    """

    def __init__(self, hasher: Hasher, stored_md5: Callable[[RemoteObject], str | None],
                 part_sizes: Iterable[int] = COMMON_PART_SIZES) -> None:
        self.hasher = hasher
        self.stored_md5 = stored_md5
        self.part_sizes = tuple(part_sizes)
        self.heads = 0

    def differs(self, local: LocalFile, remote: RemoteObject) -> str | None:
        """None when the content is the same, else the reason: ``size``, ``content``, or
        ``unverified`` (no checksum to compare: transferred to be safe)."""
        if local.size != remote.size:
            return "size"  # no hashing
        etag = remote.etag.lower()
        md5 = self.hasher.md5(local)
        if is_plain_md5(etag):
            return None if md5 == etag else "content"
        match = _MULTIPART.fullmatch(etag)
        if match and etag in self.hasher.multipart_etags(local, int(match["parts"]), self.part_sizes):
            return None
        self.heads += 1
        stored = self.stored_md5(remote)
        if stored:
            return None if stored.lower() == md5 else "content"
        return "unverified"

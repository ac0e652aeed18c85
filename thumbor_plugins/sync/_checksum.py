"""Content checks: MD5 of local files (cached by identity, see :class:`HashCache`), S3 ETags.

An ETag is the MD5 of the content for a single-part upload, and ``md5(part md5s)-N`` for a
multipart one, which depends on the part size the uploader chose. We store the content MD5 in the
object's metadata (``x-amz-meta-md5``) on every upload; a listing does not return metadata, so the
order of checks is (see :meth:`Checker.differs`): size; plain ETag vs local MD5; multipart ETag
recomputed locally for the usual part sizes; and only then one HEAD for the stored MD5.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat as stat_
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ._cache import HashCache, Identity

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
    """A file as the scan saw it. ``ctime_ns`` and ``ino`` (0: unknown) make the hash cache
    notice a same-size rewrite that restored the old mtime, or a file replaced by another."""

    rel: str
    path: Path
    size: int
    mtime_ns: int = 0
    ctime_ns: int = 0
    ino: int = 0

    @classmethod
    def from_stat(cls, rel: str, path: Path, st: os.stat_result) -> LocalFile:
        return cls(rel, path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)

    @property
    def identity(self) -> Identity:
        return (self.size, self.mtime_ns, self.ctime_ns, self.ino)


@dataclass(frozen=True)
class RemoteObject:
    rel: str
    key: str
    size: int
    etag: str  # without quotes
    last_modified: float | None = None  # POSIX time, from the listing


class FileChanged(OSError):
    """The file is not the one the scan saw any more (rewritten, replaced, or changed while being
    read). Reported for that file; the next run sees the new one."""


def _same(file: LocalFile, st: os.stat_result) -> bool:
    return (st.st_size == file.size and st.st_mtime_ns == file.mtime_ns
            and (not file.ino or st.st_ino == file.ino))


@contextmanager
def open_scanned(file: LocalFile) -> Iterator[BinaryIO]:
    """Open ``file`` for reading, only if it is still the regular file the scan saw: a FIFO put in
    its place must not block us (O_NONBLOCK), a folder or a rewritten file is a :class:`FileChanged`.
    On leaving, checks the file did not change while it was read (:class:`FileChanged`)."""
    fd = os.open(file.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(fd)
        if not stat_.S_ISREG(st.st_mode):
            raise FileChanged(errno.EINVAL, "not a regular file any more", str(file.path))
        if file.mtime_ns and not _same(file, st):
            raise FileChanged(errno.ESTALE, "changed since the scan", str(file.path))
        yield handle
        if file.mtime_ns and not _same(file, os.fstat(fd)):
            raise FileChanged(errno.ESTALE, "changed while being read", str(file.path))


def is_plain_md5(etag: str) -> bool:
    return bool(_PLAIN_MD5.fullmatch(etag))


class Hasher:
    """MD5 and multipart ETags of local files, through a :class:`HashCache` keyed by the file's
    identity (size, mtime, ctime, inode): an unchanged file is read once, in this process
    (``--watch``) or, with a persistent cache, across runs. ``verify=True`` (``--checksum``)
    reads every file again, whatever the cache says. Thread-safe (a lost race only hashes twice).
    Reading raises ``OSError`` (:class:`FileChanged` when the file is not the scanned one)."""

    def __init__(self, cache: HashCache | None = None, *, verify: bool = False) -> None:
        self.cache = cache if cache is not None else HashCache()
        self.verify = verify
        self.files_hashed = 0
        self.bytes_read = 0  # what the content checks cost (a no-op run with a warm cache: 0)

    def md5(self, file: LocalFile) -> str:
        cached = None if self.verify else self.cache.md5(file.rel, file.identity)
        if cached is None:
            digest = hashlib.md5(usedforsecurity=False)
            with open_scanned(file) as f:
                while block := f.read(_BLOCK):
                    digest.update(block)
                    self.bytes_read += len(block)
            cached = digest.hexdigest()
            self.cache.put(file.rel, file.identity, md5=cached)
            self.files_hashed += 1
        return cached

    def matched(self, file: LocalFile, etag: str) -> bool:
        """Whether ``etag`` is already known to be this very file's content (no reading)."""
        return not self.verify and self.cache.matched(file.rel, file.identity, etag)

    def remember(self, file: LocalFile, etag: str) -> None:
        self.cache.put(file.rel, file.identity, etag=etag)

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
        with open_scanned(file) as f:
            while True:
                step = min([_BLOCK] + [p - pos % p for p in sizes])
                block = f.read(step)
                if not block:
                    break
                pos += len(block)
                self.bytes_read += len(block)
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
        if etag and self.hasher.matched(local, etag):
            return None  # this file, unchanged, was already found to be this object: no reading
        same = self._same(local, remote, etag)
        if same and etag:
            self.hasher.remember(local, etag)
        return None if same else ("unverified" if same is None else "content")

    def _same(self, local: LocalFile, remote: RemoteObject, etag: str) -> bool | None:
        md5 = self.hasher.md5(local)
        if is_plain_md5(etag):
            return md5 == etag
        match = _MULTIPART.fullmatch(etag)
        if match and etag in self.hasher.multipart_etags(local, int(match["parts"]), self.part_sizes):
            return True
        self.heads += 1
        stored = self.stored_md5(remote)
        return stored.lower() == md5 if stored else None

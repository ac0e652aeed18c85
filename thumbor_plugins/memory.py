"""Two memory tiers per worker process, in front of S3: what a render reads, and what a hit serves.

**Recent originals** (``IMGSTACK_ORIGINALS_CACHE_BYTES``): the originals this worker read lately,
with their ETags. A later miss of the same original still asks S3, with ``If-None-Match``: S3
answers 304 when the object is unchanged, and the worker renders from the bytes it holds. It is
never stale (S3 decides every time) and saves the transfer, not the request: a 4.6 MB original
cost the S3 server 5.8 ms of CPU to send and 0.65 ms to confirm (docs/decisions.md). Renders of
one original come in bursts (the presets warmed at upload, a page's ``srcset``, the watermark
of every render). Only originals held in memory are kept (spooled ones are files), at most a
quarter of the budget each.

**Hot results** (``IMGSTACK_HOT_RESULTS_BYTES``, ``IMGSTACK_HOT_RESULTS_SECONDS``): results this
worker read from the result storage, served again without asking S3 for at most that many
seconds, with what S3 answered (its Last-Modified, not this server's clock). A purge must still
reach them (../shared/DESIGN.md):

- a purge on any worker of this server drops the purged original's entries in every worker at
  once: :class:`Generations`, counters shared through a memory-mapped file in the directory
  :mod:`thumbor_plugins.serve` makes for its workers, one per slot of the original's prefix.
  An entry carries the counter of its original as it was *before* its bytes were read from S3;
  the purge adds one *after* its deletes, so an entry read before the deletes is never served
  after them;
- a purge that reaches another replica (events go to one of them), or ``imgstack purge``,
  reaches this tier within ``IMGSTACK_HOT_RESULTS_SECONDS`` (10 by default; the compose stack's
  nginx cache keeps a result up to 10 minutes).

With ``IMGSTACK_REVALIDATE_ORIGINALS`` a hot hit is checked like any other (one HEAD).
"""

from __future__ import annotations

import datetime
import fcntl
import mmap
import os
import struct
import zlib
from dataclasses import dataclass
from typing import IO

from cachetools import LRUCache, TTLCache

from .s3.types import ObjectData
from .settings import Settings
from .singleflight import LOCK_DIR_ENV
from .sources import Source

__all__ = ["Generations", "HotResults", "Original", "RecentOriginals", "Tiers", "tiers"]

#: purge-counter slots (an original's prefix picks one; two originals sharing a slot only means
#: a purge of one also drops the other's hot results)
SLOTS = 4096
_COUNTER = struct.Struct("<Q")
#: the shared counters' file in the workers' directory
FILE_NAME = "purges.bin"
#: bytes counted per entry on top of its body (the entry, its key, the cache's bookkeeping: about
#: 550-830 bytes measured), so that a budget holds as much with tiny bodies as it says
ENTRY_OVERHEAD = 1024


class Generations:
    """Purge counters per original, shared by the workers of one server through a file in
    ``directory`` (each process's own when None). :meth:`now` before reading, :meth:`purged`
    after deleting."""

    def __init__(self, directory: str | None = None) -> None:
        size = SLOTS * _COUNTER.size
        self._counters: mmap.mmap | bytearray
        #: the shared file, kept open to lock a slot while adding to it
        self._fd: int | None = None
        if directory is None:
            self._counters = bytearray(size)
            return
        fd = os.open(os.path.join(directory, FILE_NAME), os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)  # zeros; a worker that finds it sized keeps the counts
        self._counters = mmap.mmap(fd, size)
        self._fd = fd

    @staticmethod
    def slot(source: Source) -> int:
        # crc32, not hash(): the same slot in every process
        return zlib.crc32(source.prefix.encode()) % SLOTS

    def now(self, source: Source) -> tuple[int, int]:
        """The original's (slot, counter) as it is now."""
        slot = self.slot(source)
        return slot, self.count(slot)

    def count(self, slot: int) -> int:
        return int(_COUNTER.unpack_from(self._counters, slot * _COUNTER.size)[0])

    def purged(self, source: Source) -> None:
        """The original's results were just deleted: entries read before are dropped, in every
        worker. Each purge moves the counter: two workers purging at once add one each (the
        slot is locked while it is added to), so an entry read between them is dropped too."""
        slot = self.slot(source)
        offset = slot * _COUNTER.size
        if self._fd is not None:
            fcntl.lockf(self._fd, fcntl.LOCK_EX, _COUNTER.size, offset)
        try:
            _COUNTER.pack_into(self._counters, offset, (self.count(slot) + 1) % 2**64)
        finally:
            if self._fd is not None:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, _COUNTER.size, offset)


@dataclass(frozen=True, slots=True)
class _Hot:
    data: ObjectData
    slot: int
    generation: int


class HotResults:
    """Results served again from memory for a few seconds; see the module docstring."""

    def __init__(self, max_bytes: int, seconds: float, generations: Generations) -> None:
        self.generations = generations
        # off (0 bytes or seconds): nothing fits
        self._max_item = max_bytes // 8 if seconds > 0 else 0
        self._cache: TTLCache[str, _Hot] = TTLCache(
            maxsize=max(1, max_bytes), ttl=seconds if seconds > 0 else 1,
            getsizeof=lambda hot: len(hot.data.body) + ENTRY_OVERHEAD)

    def get(self, key: str) -> ObjectData | None:
        hot = self._cache.get(key)
        if hot is None:
            return None
        if self.generations.count(hot.slot) != hot.generation:
            self._cache.pop(key, None)  # its original was purged since it was read
            return None
        return hot.data

    def put(self, key: str, data: ObjectData, before: tuple[int, int]) -> None:
        """Keep ``data`` under ``key``; ``before`` is :meth:`Generations.now` of its original,
        taken before ``data`` was read."""
        if len(data.body) + ENTRY_OVERHEAD > self._max_item:
            return
        slot, generation = before
        if self.generations.count(slot) != generation:
            return  # purged meanwhile
        self._cache[key] = _Hot(data, slot, generation)

    def forget(self, key: str) -> None:
        self._cache.pop(key, None)

    def __len__(self) -> int:
        return len(self._cache)


@dataclass(frozen=True, slots=True)
class Original:
    """An original as S3 sent it; :meth:`replay` reads it again like a fresh download."""

    etag: str
    body: bytes
    content_type: str | None
    last_modified: datetime.datetime | None

    def replay(self) -> Replay:
        return Replay(self)


class Replay:
    """The body of a recent original, read through the interface of :class:`.s3.fetch.Stream`
    (``peek``, ``read``, ``read_into``, its headers); nothing is received from S3."""

    received = 0

    def __init__(self, original: Original) -> None:
        self.etag = original.etag
        self.content_type = original.content_type
        self.last_modified = original.last_modified
        self.length = len(original.body)
        self._body = original.body

    async def peek(self, size: int) -> bytes:
        return self._body[:size]

    async def read(self) -> bytes:
        return self._body

    async def read_into(self, file: IO[bytes]) -> None:
        file.write(self._body)


class RecentOriginals:
    """Originals by (bucket, key), least recently used out first; see the module docstring."""

    def __init__(self, max_bytes: int) -> None:
        self._max_item = max_bytes // 4  # off (0 bytes): nothing fits
        self._cache: LRUCache[Source, Original] = LRUCache(
            maxsize=max(1, max_bytes), getsizeof=lambda original: len(original.body) + ENTRY_OVERHEAD)

    def get(self, source: Source) -> Original | None:
        return self._cache.get(source)

    def put(self, source: Source, original: Original) -> None:
        if not original.etag or len(original.body) + ENTRY_OVERHEAD > self._max_item:
            self._cache.pop(source, None)  # an older version must not be confirmed by its ETag
            return
        self._cache[source] = original

    def forget(self, source: Source) -> None:
        self._cache.pop(source, None)

    def __len__(self) -> int:
        return len(self._cache)


@dataclass(frozen=True, slots=True)
class Tiers:
    originals: RecentOriginals
    results: HotResults
    generations: Generations


_tiers: dict[tuple[int, int, float], Tiers] = {}
_generations: Generations | None = None


def generations() -> Generations:
    """This process's purge counters, shared with the other workers of its server."""
    global _generations  # noqa: PLW0603 - one per process, made on first use (after the fork)
    if _generations is None:
        _generations = Generations(os.environ.get(LOCK_DIR_ENV) or None)
    return _generations


def tiers(settings: Settings) -> Tiers:
    """This process's tiers, sized by ``settings``."""
    sizes = (settings.originals_cache_bytes, settings.hot_results_bytes, settings.hot_results_seconds)
    found = _tiers.get(sizes)
    if found is None:
        shared = generations()
        found = _tiers[sizes] = Tiers(RecentOriginals(sizes[0]), HotResults(sizes[1], sizes[2], shared), shared)
    return found

"""One render per result-storage key at a time, across every worker of one server.

The first request for a key (the leader) renders and stores; identical requests that arrive
meanwhile (followers) wait until the leader has finished, then go on, and find the stored result
(a hit). Requests for different keys never wait for one another (docs/decisions.md).

Two levels, both cheap:

- in a worker: a dict of key -> future (no syscalls);
- between the workers of :mod:`thumbor_plugins.serve`: a POSIX byte-range lock on one shared file,
  one byte at an offset taken from the key's hash (2**62 offsets, so two keys practically never
  share one). The kernel drops the lock if the worker dies, so a crash never wedges a key.

If the leader fails or its result is not stored, the followers render themselves (at most once
each): a follower never waits for more than one leader nor longer than ``max_wait``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator

#: environment variable naming the directory shared by the workers (set by thumbor_plugins.serve)
LOCK_DIR_ENV = "IMGSTACK_LOCK_DIR"
_OFFSETS = 2**62


def _offset(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % _OFFSETS


class SingleFlight:
    def __init__(self, lock_dir: str | None = None, *, poll: float = 0.01, max_wait: float = 60.0) -> None:
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._poll = poll
        self._max_wait = max_wait
        self._fd: int | None = None
        if lock_dir:
            self._fd = os.open(os.path.join(lock_dir, "singleflight.lock"), os.O_RDWR | os.O_CREAT, 0o600)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[bool]:
        """Run the body as the key's leader (yields True) or, after the leader ended, as a
        follower (yields False)."""
        running = self._waiting.get(key)
        if running is not None:
            await self._wait_for(running)
            yield False
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[key] = done
        try:
            leader = await self._lock(key)
            try:
                yield leader
            finally:
                if leader:
                    self._unlock(key)
        finally:
            del self._waiting[key]
            done.set_result(None)

    async def _wait_for(self, running: asyncio.Future[None]) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(running), self._max_wait)

    async def _lock(self, key: str) -> bool:
        """Take the key's lock between workers: True at once (leader), or False once another
        worker's leader has released it (follower)."""
        if self._fd is None:
            return True
        offset = _offset(key)
        if self._try_lock(offset):
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_wait
        while loop.time() < deadline:
            await asyncio.sleep(self._poll)
            if self._try_lock(offset):
                fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, offset)
                break
        return False

    def _try_lock(self, offset: int) -> bool:
        assert self._fd is not None
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except (BlockingIOError, PermissionError):
            return False
        return True

    def _unlock(self, key: str) -> None:
        if self._fd is not None:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, _offset(key))


_shared: SingleFlight | None = None


def shared() -> SingleFlight:
    """This process's instance, on the directory :mod:`thumbor_plugins.serve` made (in-process
    only when started otherwise)."""
    global _shared  # noqa: PLW0603 - one per process, made on first use (after the fork)
    if _shared is None:
        _shared = SingleFlight(os.environ.get(LOCK_DIR_ENV) or None)
    return _shared

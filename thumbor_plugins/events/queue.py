"""A bounded job queue with a small pool of workers (asyncio; no Thumbor, no S3).

Contract:

- :meth:`JobQueue.submit` is all-or-nothing: either every job of an event is queued (or joined to
  an equal pending one) or :class:`QueueFull` is raised and nothing changed — the endpoint then
  answers 503 and MinIO keeps the event and retries it.
- Coalescing: a job joins the *latest* pending job of the same original when that one has the
  same action (two uploads of one key waiting → one warm). It never joins an older one across a
  different action (upload, delete, upload → warm, purge, warm: the last word stays last), nor a
  job already running (it may have read the original before the new upload).
- Per original, jobs run one at a time in arrival order, so a purge never races a warm of the same
  key; different originals run in parallel on up to ``workers`` workers.
- Every future resolves with the :class:`Outcome` of the job; a job that raises resolves with
  ``ok=False`` (futures never carry exceptions, so nobody has to retrieve them).
- ``size`` bounds the jobs waiting to start (running ones are not counted); ``on_depth`` is called
  with that number whenever it changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from .jobs import Job

logger = logging.getLogger("imgstack.events")


class QueueFull(RuntimeError):
    """No room for an event's jobs (the endpoint answers 503; MinIO retries)."""


@dataclass(frozen=True)
class Outcome:
    """What a job did. ``ok=False``: it should be tried again (S3 or a render failed transiently)."""

    job: Job
    ok: bool
    detail: str = ""
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class _Entry:
    job: Job
    future: asyncio.Future


class JobQueue:
    def __init__(
        self,
        run: Callable[[Job], Awaitable[Outcome]],
        *,
        size: int,
        workers: int,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        if size < 1 or workers < 1:
            raise ValueError("queue size and workers must be >= 1")
        self._run = run
        self.size = size
        self.workers = workers
        self._on_depth = on_depth
        self._pending: list[_Entry] = []
        self._running: set = set()
        self._tasks: list[asyncio.Task] = []
        self._changed: asyncio.Condition | None = None

    @property
    def depth(self) -> int:
        """Jobs waiting to start."""
        return len(self._pending)

    @property
    def running(self) -> int:
        return len(self._running)

    def has_pending(self, source: object) -> bool:
        """True when a job for ``source`` is waiting to start."""
        return any(entry.job.source == source for entry in self._pending)

    def submit(self, jobs: Sequence[Job]) -> list[asyncio.Future]:
        """Queue ``jobs`` (one future per job, in order; coalesced jobs share a future).
        Must be called from the event loop the workers run on. Raises :class:`QueueFull`."""
        self._start()
        planned: list[_Entry] = []
        futures: list[asyncio.Future] = []
        for job in jobs:
            latest = self._latest_pending(job, planned)
            if latest is not None and latest.job.action == job.action:
                futures.append(latest.future)
                continue
            entry = _Entry(job, asyncio.get_running_loop().create_future())
            planned.append(entry)
            futures.append(entry.future)
        if len(self._pending) + len(planned) > self.size:
            raise QueueFull(f"{len(self._pending)} jobs waiting (IMGSTACK_EVENTS_QUEUE_SIZE={self.size})")
        if planned:
            self._pending.extend(planned)
            self._depth_changed()
            self._notify()
        return futures

    def _latest_pending(self, job: Job, planned: list[_Entry]) -> _Entry | None:
        for entry in reversed([*self._pending, *planned]):
            if entry.job.source == job.source:
                return entry
        return None

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._tasks and self._tasks[0].get_loop() is loop and not self._tasks[0].done():
            return
        self._changed = asyncio.Condition()
        self._tasks = [loop.create_task(self._work(), name=f"imgstack-events-{n}") for n in range(self.workers)]

    def _notify(self) -> None:
        changed = self._changed
        if changed is None:
            return

        async def notify() -> None:
            async with changed:
                changed.notify_all()

        asyncio.get_running_loop().create_task(notify())

    def _depth_changed(self) -> None:
        if self._on_depth is not None:
            try:
                self._on_depth(len(self._pending))
            except Exception:  # noqa: BLE001 - observation never breaks the queue
                logger.exception("queue depth observer failed")

    def _next(self) -> _Entry | None:
        """The oldest pending job whose original is not being worked on."""
        blocked = set(self._running)
        for index, entry in enumerate(self._pending):
            if entry.job.source not in blocked:
                return self._pending.pop(index)
            blocked.add(entry.job.source)  # keep arrival order per original
        return None

    async def _work(self) -> None:
        assert self._changed is not None
        changed = self._changed
        while True:
            async with changed:
                await changed.wait_for(lambda: any(e.job.source not in self._running for e in self._pending))
                entry = self._next()
            if entry is None:
                continue
            self._running.add(entry.job.source)
            self._depth_changed()
            try:
                outcome = await self._run(entry.job)
            except asyncio.CancelledError:
                entry.future.cancel()
                raise
            except Exception as error:  # noqa: BLE001 - a failed job is a value, not a crash
                logger.exception("events job %s failed", entry.job)
                outcome = Outcome(entry.job, ok=False, detail=f"{type(error).__name__}: {error}")
            finally:
                self._running.discard(entry.job.source)
            if not entry.future.done():
                entry.future.set_result(outcome)
            async with changed:
                changed.notify_all()

    async def close(self) -> None:
        """Stop the workers (pending jobs are dropped: their events were not acknowledged)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for entry in self._pending:
            entry.future.cancel()
        self._pending.clear()

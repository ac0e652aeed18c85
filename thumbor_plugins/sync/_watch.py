"""``--watch``: push again as files change, only files that are complete, retrying what failed.

Every run is a full :meth:`Syncer.run` (one listing, the same safety rules); what the watcher adds
is WHEN to run and WHICH files to leave for later:

- a file is transferred only once it has been quiet — size and mtime unchanged — for the quiet
  interval (:class:`QuietRule`, passed to the run as ``hold``); a file still being written is
  held back, and a run is scheduled for when it can have settled: one upload per finished file;
- after a run with failures, or one that could not reach S3, the next run comes after a backoff
  (1 s, 2 s, 4 s ... up to ``retry_max``) until a run succeeds; a change to a file schedules a
  run at once (after the quiet interval), whatever the backoff;
- every ``reconcile`` seconds a run happens anyway, catching what no event announced (missed
  events, objects removed from the bucket by someone else).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ._checksum import LocalFile
from ._run import Outcome, Syncer
from .errors import Refused, RemoteError, SyncError

DEFAULT_RECONCILE = 300.0
_TICK = 0.25  # longest wait between checks of the stop flag


class QuietRule:
    """``rule(file)`` is True (hold it back) until ``file`` has been quiet for ``quiet`` seconds:
    its mtime is that old, or this rule has seen the same size and mtime for that long (a clock
    skewed between the writer and us cannot hold a file forever). Call :meth:`begin` before each
    run; :attr:`due` is then the monotonic time at which the earliest held file can have settled."""

    def __init__(self, quiet: float, *, wall: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet = quiet
        self._wall = wall
        self._clock = clock
        self._seen: dict[str, tuple[tuple[int, int], float]] = {}
        self._next_seen: dict[str, tuple[tuple[int, int], float]] = {}
        self.due: float | None = None

    def begin(self) -> None:
        self._seen, self._next_seen = {**self._seen, **self._next_seen}, {}
        self.due = None

    def end(self) -> None:
        """Forget the files the last run did not see (deleted)."""
        self._seen, self._next_seen = self._next_seen, {}

    def __call__(self, file: LocalFile) -> bool:
        now = self._clock()
        key = (file.size, file.mtime_ns)
        previous = self._seen.get(file.rel)
        since = previous[1] if previous is not None and previous[0] == key else now
        self._next_seen[file.rel] = (key, since)
        age = max(self._wall() - file.mtime_ns / 1e9, now - since)
        if age >= self.quiet:
            return False
        settles = now + self.quiet - age
        self.due = settles if self.due is None else min(self.due, settles)
        return True


class Watcher:
    """Schedules the runs of a push :class:`Syncer` from file events (``events``: a queue that
    receives anything for each batch of changes, e.g. watchfiles' sets). ``on_outcome`` gets each
    run's outcome, ``on_error`` each :class:`SyncError` of a run (S3 unreachable, refused), which
    does not stop watching."""

    def __init__(self, syncer: Syncer, *, quiet: float, reconcile: float = DEFAULT_RECONCILE,
                 on_outcome: Callable[[Outcome], None] = lambda o: None,
                 on_error: Callable[[SyncError], None] = lambda e: None,
                 retry_base: float = 1.0, retry_max: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.syncer = syncer
        self.rule = QuietRule(quiet, clock=clock)
        self.quiet = quiet
        self.reconcile = reconcile
        self.on_outcome = on_outcome
        self.on_error = on_error
        self.retry_base = retry_base
        self.retry_max = retry_max
        self._clock = clock
        self._attempt = 0
        self.next_run: float | None = None
        self.next_reconcile = clock() + reconcile
        self.last: Outcome | None = None

    def _schedule(self, when: float) -> None:
        self.next_run = when if self.next_run is None else min(self.next_run, when)

    def _backoff(self) -> None:
        delay = min(self.retry_max, self.retry_base * (2 ** self._attempt))
        self._attempt += 1
        self._schedule(self._clock() + delay)

    def run_once(self) -> Outcome:
        """One run, holding back files still being written. Raises :class:`SyncError` (the
        caller decides whether that ends the watch); failures schedule a retry."""
        self.next_run = None
        self.next_reconcile = self._clock() + self.reconcile
        self.rule.begin()
        try:
            outcome = self.syncer.run(hold=self.rule)
        except RemoteError:
            self._backoff()
            raise
        self.rule.end()
        if self.rule.due is not None:
            self._schedule(self.rule.due)
        if outcome.failures:
            self._backoff()
        else:
            self._attempt = 0
        self.last = outcome
        return outcome

    def watch(self, events: queue.Queue[Any], stop: threading.Event) -> Outcome | None:
        """Run until ``stop`` is set. Raises :class:`Refused` when the folder disappears."""
        root = self.syncer.job.root
        while not stop.is_set():
            now = self._clock()
            due = min(d for d in (self.next_run, self.next_reconcile) if d is not None)
            try:
                events.get(timeout=max(0.0, min(_TICK, due - now)))
            except queue.Empty:
                pass
            else:
                while True:  # take the whole batch: one run for all of it
                    try:
                        events.get_nowait()
                    except queue.Empty:
                        break
                self._schedule(self._clock() + self.quiet)
            if stop.is_set():
                break
            now = self._clock()
            if (self.next_run is not None and now >= self.next_run) or now >= self.next_reconcile:
                if not root.is_dir():
                    raise Refused(f"source folder {root} disappeared: stopped watching")
                try:
                    outcome = self.run_once()
                except SyncError as error:  # S3 down or refused: say so, keep watching
                    self.on_error(error)
                    continue
                self.on_outcome(outcome)
        return self.last

"""Load and measurement for bench/compare.py: a keep-alive HTTP client loop (or a process pool for
the bare libraries) bounded in count and time, CPU and memory of a process tree read from /proc,
and a /healthcheck probe.
"""

from __future__ import annotations

import http.client
import math
import multiprocessing
import os
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from dataclasses import dataclass, field
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


# --- process trees -------------------------------------------------------------------------------

def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on; the command name may hold spaces and parentheses."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def tree(roots: Iterable[int]) -> set[int]:
    """The roots and all their descendants that are alive."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid for pid in roots if _stat_fields(pid)]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid``: tells a process from a later one that reused its id."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of each process, plus those of its children already reaped (cutime + cstime),
    so that a worker that exits during a row is still counted."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            total += sum(int(value) for value in fields[11:15])
    return total / _TICKS


def rss_bytes(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
        except OSError:
            pass
    return total


def describe(pids: Iterable[int]) -> list[dict]:
    """Command line (shortened) and RSS of each process, for the report."""
    found = []
    for pid in sorted(pids):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        command = " ".join(Path(arg).name if arg.startswith("/") else arg for arg in argv[:3]).strip()
        found.append({"command": command, "rss_mb": round(rss_bytes([pid]) / 2**20, 1)})
    return found


class TreeMonitor:
    """CPU time and peak RSS (sampled every 100 ms) of the process trees under ``roots`` while
    ``with`` is active.

    The tree is found again every RESCAN seconds, not at every sample: finding it reads every
    process's /proc/<pid>/stat (1.6 ms of CPU here), and at 10 samples a second two monitors took
    3% of a core from the servers they measure; a worker restarted meanwhile is counted from the
    next scan on (its CPU in the totals regardless: see cpu_seconds)."""

    RESCAN = 2.0

    def __init__(self, roots: Callable[[], Iterable[int]]) -> None:
        self._roots = roots
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.peak_rss = 0
        self.cpu = 0.0

    def _sample(self) -> None:
        pids, scanned = tree(self._roots()), time.monotonic()
        while not self._stop.wait(0.1):
            if time.monotonic() - scanned >= self.RESCAN:
                pids, scanned = tree(self._roots()), time.monotonic()
            self.peak_rss = max(self.peak_rss, rss_bytes(pids))

    def __enter__(self) -> TreeMonitor:
        self._cpu_before = cpu_seconds(tree(self._roots()))
        self.peak_rss = rss_bytes(tree(self._roots()))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.cpu = cpu_seconds(tree(self._roots())) - self._cpu_before


# --- health probe ----------------------------------------------------------------------------

def _probe(host: str, port: int, timeout: float) -> float | None:
    """One GET /healthcheck on a new connection: seconds, or None when it failed."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", "/healthcheck")
        response = connection.getresponse()
        response.read()
        ok = response.status == 200
    except (OSError, http.client.HTTPException):
        ok = False
    finally:
        connection.close()
    return time.perf_counter() - started if ok else None


def _probe_loop(host: str, port: int, timeout: float, ready, stop, results) -> None:  # noqa: ANN001
    ready.set()
    latencies, failures = [], 0
    while not stop.is_set():
        started = time.perf_counter()
        latency = _probe(host, port, timeout)
        if latency is None:
            failures += 1
        else:
            latencies.append(latency)
        stop.wait(max(0.0, 0.1 - (time.perf_counter() - started)))
    results.send((latencies, failures))


class HealthProbe:
    """GET /healthcheck about every 100 ms on a new connection each time (as a load balancer's
    probe does), while ``with`` is active; ``latencies`` in seconds, ``failures`` counted.

    The probe runs in a process of its own: inside the load generator's process its timings
    include waits for that process's GIL (seen here: p50 60 ms there, 2 ms from curl). ``with``
    waits until that process has started: a spawned Python imports this bench (Thumbor's and our
    packages with it) first, about 0.14 s of CPU that belongs to no row, and the probing must not
    begin after the row's load has."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        context = multiprocessing.get_context("spawn")
        self._ready, self._stop = context.Event(), context.Event()
        self._results, sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_probe_loop, args=(host, port, timeout, self._ready, self._stop, sender), daemon=True
        )
        self.latencies: list[float] = []
        self.failures = 0

    def __enter__(self) -> HealthProbe:
        self._process.start()
        if not self._ready.wait(120):
            self._process.kill()
            raise RuntimeError("the health probe's process did not start within 120 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.latencies, self.failures = self._results.recv()
        self._process.join()


# --- load ------------------------------------------------------------------------------------

@dataclass
class Sample:
    latency: float
    status: int  # 0: the connection failed
    content_type: str = ""
    size: int = 0
    group: str = ""  # the original it rendered


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0
    bodies: dict[int, bytes] = field(default_factory=dict)  # request index -> body, when kept


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    group: str = ""  # the original it renders


class _Feed:
    """Hands out (index, item) until the items or the time run out; shared by the client threads."""

    def __init__(self, items: Sequence, duration: float) -> None:
        self._items = iter(enumerate(items))
        self._deadline = time.perf_counter() + duration
        self._lock = threading.Lock()

    def next(self):
        with self._lock:
            if time.perf_counter() >= self._deadline:
                return None
            return next(self._items, None)


def http_run(host: str, port: int, requests: Sequence[Request], concurrency: int, duration: float,
             *, keep_bodies: bool = False, timeout: float = 120.0) -> Run:
    """``concurrency`` threads, each with its own keep-alive connection, send ``requests`` in
    order until they or ``duration`` seconds run out; requests already sent are awaited."""
    feed, run, lock = _Feed(requests, duration), Run(), threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        while (item := feed.next()) is not None:
            index, request = item
            started = time.perf_counter()
            try:
                connection.request("GET", request.path, headers=request.headers)
                response = connection.getresponse()
                body = response.read()
                sample = Sample(time.perf_counter() - started, response.status,
                                response.getheader("Content-Type", ""), len(body), request.group)
            except (OSError, http.client.HTTPException):
                connection.close()  # reconnects on the next request
                sample, body = Sample(time.perf_counter() - started, 0, group=request.group), b""
            with lock:
                run.samples.append(sample)
                if keep_bodies and sample.status == 200:
                    run.bodies[index] = body
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.seconds = time.perf_counter() - started
    return run


def pool_run(pool: Executor, function: Callable, jobs: Sequence, concurrency: int, duration: float) -> Run:
    """Keeps ``concurrency`` jobs in flight in ``pool`` until ``jobs`` or ``duration`` run out;
    ``function(job)`` returns (seconds, output bytes); samples are grouped by ``job.key``."""
    feed, run = _Feed(jobs, duration), Run()
    started = time.perf_counter()
    pending: dict = {}  # future -> job

    def submit(job) -> None:
        pending[pool.submit(function, job)] = job

    for _ in range(concurrency):
        if (item := feed.next()) is not None:
            submit(item[1])
    while pending:
        done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for future in done:
            job = pending.pop(future)
            seconds, size = future.result()
            run.samples.append(Sample(seconds, 200, size=size, group=job.key))
            if (item := feed.next()) is not None:
                submit(item[1])
    run.seconds = time.perf_counter() - started
    return run


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _latencies_by_group(samples: Sequence[Sample]) -> dict[str, list[float]]:
    by_group: dict[str, list[float]] = defaultdict(list)
    for sample in samples:
        by_group[sample.group].append(sample.latency)
    return by_group


def median_per_group(samples: Sequence[Sample]) -> dict[str, float]:
    """{original: median latency in ms} (the originals of a corpus differ in cost)."""
    by_group = _latencies_by_group(samples)
    return {group: round(statistics.median(latencies) * 1000, 1) for group, latencies in sorted(by_group.items())}


def spread_per_group(samples: Sequence[Sample]) -> float | None:
    """p95 of each latency divided by the median latency of its group (requests for the same
    original), so that originals of unequal cost (a progressive JPEG among baseline ones) are
    not taken for tail latency. Groups of fewer than 3 samples are left out."""
    ratios = []
    for latencies in _latencies_by_group(samples).values():
        if len(latencies) >= 3:
            median = statistics.median(latencies)
            ratios += [latency / median for latency in latencies]
    return percentile(ratios, 0.95)

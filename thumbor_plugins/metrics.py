"""Prometheus metrics of one Thumbor process, or of all its worker processes.

Single process (the default): the metrics live in this module's :data:`REGISTRY` and ``/metrics``
exposes it (plus the process collector: CPU, memory, open files).

Several worker processes (``thumbor --processes=N``, or several Thumbor processes behind one
socket): set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory writable by every worker *before*
Thumbor starts. prometheus_client then keeps every value in per-process files there and
``/metrics``, whichever worker answers, adds them up (:func:`exposition`). The directory must be
emptied when the service (re)starts — a tmpfs, or ``rm -rf "$PROMETHEUS_MULTIPROC_DIR"/*`` in the
start script — otherwise the previous run's counters are added to this one's. Files of workers
that died are dropped from the warm-queue gauge at each scrape.

The metric names and labels below are the contract of the dashboards; change them only with them.
"""

from __future__ import annotations

import glob
import os
import re

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

__all__ = [
    "CONTENT_TYPE",
    "KINDS",
    "REASONS",
    "REGISTRY",
    "exposition",
    "multiprocess_dir",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
KINDS = ("image", "event", "health", "metrics", "other")
#: rejection reasons known in advance (exposed at 0 so that dashboards and alerts see them)
REASONS = (
    "bad_signature",
    "expired",
    "malformed",
    "unsafe_not_allowed",
    "expiry_required",
    "lifetime_too_long",
    "not_a_preset",
    "bad_source",
    "not_found",
    "too_large",
    "too_many_pixels",
    "overload",
    "s3_unavailable",
    "unauthorized",
)


def multiprocess_dir() -> str | None:
    """The multiprocess directory prometheus_client uses, or None (single process)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


if multiprocess_dir() is not None and not os.path.isdir(multiprocess_dir() or ""):
    # prometheus_client would fail later with a bare FileNotFoundError on the first metric
    raise RuntimeError(f"PROMETHEUS_MULTIPROC_DIR={multiprocess_dir()!r} is not a directory: create it "
                       "(empty, writable by every worker) or unset it")

REGISTRY = CollectorRegistry(auto_describe=True)
if multiprocess_dir() is None:
    ProcessCollector(registry=REGISTRY)

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter(
    "imgstack_requests", "HTTP requests answered, by route kind and status code.",
    ["kind", "status"], registry=REGISTRY)
REQUEST_SECONDS = Histogram(
    "imgstack_request_duration_seconds", "Whole request time, by route kind.",
    ["kind"], buckets=_LATENCY, registry=REGISTRY)
REJECTED = Counter(
    "imgstack_rejected_requests", "Requests refused, by reason.", ["reason"], registry=REGISTRY)
S3_FETCH_SECONDS = Histogram(
    "imgstack_s3_fetch_duration_seconds", "Time to read one original from S3 (successful or not).",
    buckets=_LATENCY, registry=REGISTRY)
S3_FETCHED_BYTES = Counter(
    "imgstack_s3_fetched_bytes", "Bytes of originals received from S3.", registry=REGISTRY)
RENDER_SECONDS = Histogram(
    "imgstack_render_duration_seconds", "Decode + transform + encode time of a result-storage miss.",
    buckets=_LATENCY, registry=REGISTRY)
RESULT_STORAGE = Counter(
    "imgstack_result_storage_lookups", "Result-storage lookups, by result (hit or miss).",
    ["result"], registry=REGISTRY)
MEMORY_HITS = Counter(
    "imgstack_memory_hits", "Reads answered from a worker's memory instead of S3: an original S3 "
    "confirmed unchanged (If-None-Match: 304) or a hot result, by tier (originals or results).",
    ["tier"], registry=REGISTRY)
PURGE_DELETE_FAILURES = Counter(
    "imgstack_purge_delete_failures", "Variants a purge could not delete (S3 DeleteObjects refused "
    "them): still reachable until the event, answered 503, is retried.", registry=REGISTRY)
RESULT_STORAGE_WRITES = Counter(
    "imgstack_result_storage_writes", "Results written to the result storage, by outcome: stored, "
    "withdrawn (deleted again: its original changed or went away while it was rendered) or failed "
    "(S3 refused the write; the response was still served).", ["outcome"], registry=REGISTRY)
WRITE_OUTCOMES = ("stored", "withdrawn", "failed")
INTERMEDIATES = Counter(
    "imgstack_intermediates", "Stored intermediates of huge originals: made (first miss) or used "
    "(a later miss rendered from one instead of the original).", ["event"], registry=REGISTRY)
WARM_QUEUE_DEPTH = Gauge(
    "imgstack_warm_queue_depth", "Pending warm/purge jobs (all live workers added up).",
    registry=REGISTRY, multiprocess_mode="livesum")

for _kind in KINDS:
    REQUEST_SECONDS.labels(_kind)
for _reason in REASONS:
    REJECTED.labels(_reason)
for _result in ("hit", "miss"):
    RESULT_STORAGE.labels(_result)
for _outcome in WRITE_OUTCOMES:
    RESULT_STORAGE_WRITES.labels(_outcome)
for _event in ("made", "used"):
    INTERMEDIATES.labels(_event)
for _tier in ("originals", "results"):
    MEMORY_HITS.labels(_tier)
del _kind, _reason, _result, _outcome, _event, _tier

_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]*_(\d+)\.db$")


def _forget_dead_workers(path: str) -> None:
    """Remove live-gauge files of workers that no longer run (a crash, a restart of one worker):
    a ``livesum`` gauge would otherwise keep adding their last value."""
    from prometheus_client import multiprocess

    for name in glob.glob(os.path.join(path, "gauge_live*.db")):
        match = _LIVE_GAUGE_FILE.search(name)
        if match is None:
            continue
        pid = int(match[1])
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, path)
        except PermissionError:
            pass  # alive, another user's


def exposition() -> bytes:
    """The current metrics in Prometheus text format (all workers' in multiprocess mode)."""
    path = multiprocess_dir()
    if path is None:
        return generate_latest(REGISTRY)
    from prometheus_client import multiprocess

    _forget_dead_workers(path)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return generate_latest(registry)

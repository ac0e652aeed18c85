"""Observation hooks: the one place the rest of the package reports what happened (metrics and
the access log subscribe here). Every function is cheap and never raises.

Contract (callers):
- ``request_finished(...)``: once per HTTP request, from the handlers' ``on_finish``.
- ``s3_fetch(seconds, nbytes)``: once per original read by the loader (successful or not).
- ``rendered(seconds)``: decode + transform + encode time of a result-storage miss.
- ``result_storage(hit)``: once per result-storage lookup.
- ``result_stored(outcome)``: once per result written (stored, withdrawn or failed), when the
  write and its check against the original are over.
- ``memory_hit(tier)``: an original or a result served from a worker's memory.
- ``warm_queue_depth(n)``: whenever the events queue changes.
- ``purge_delete_failed(n)``: a purge left ``n`` variants S3 refused to delete.

Subscribers: :mod:`thumbor_plugins.metrics` (always) and :mod:`thumbor_plugins.access_log`
(unless ``IMGSTACK_ACCESS_LOG`` is off; :func:`configure` reads it once at start-up).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from . import access_log, metrics
from .settings import Settings

logger = logging.getLogger("imgstack.observe")

_access_log_enabled = True
_F = TypeVar("_F", bound=Callable[..., None])


def configure(settings: Settings) -> None:
    """Read the settings of the subscribers (called once when the handlers are set up)."""
    global _access_log_enabled
    _access_log_enabled = settings.access_log
    access_log.install_tornado_filter()
    if _access_log_enabled:
        access_log.configure(settings.access_log_file)


def _never_raises(function: _F) -> _F:
    # observing must not break serving; a broken subscriber is reported once, not per request
    reported = False

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        nonlocal reported
        try:
            function(*args, **kwargs)
        except Exception:  # noqa: BLE001
            if not reported:
                reported = True
                logger.exception("observe.%s failed (reported once)", function.__name__)

    return wrapper  # type: ignore[return-value]


@_never_raises
def request_finished(
    *,
    kind: str,
    method: str,
    status: int,
    seconds: float,
    reason: str | None = None,
    cache_hit: bool | None = None,
    bytes_sent: int | None = None,
    path: str = "",
    image_format: str | None = None,
    client: str | None = None,
) -> None:
    """``kind``: image | event | health | metrics | other. ``image_format``: the image format sent.
    ``reason``: the rejection reason word (bad_signature, expired, too_large, too_many_pixels,
    overload, ...) or None. ``path`` is the request path; implementations must not log a full
    signature."""
    if kind not in metrics.KINDS:
        kind = "other"
    metrics.REQUESTS.labels(kind, str(int(status))).inc()
    metrics.REQUEST_SECONDS.labels(kind).observe(max(0.0, seconds))
    if reason:
        metrics.REJECTED.labels(reason).inc()
    if _access_log_enabled:
        access_log.log(kind=kind, method=method, status=status, seconds=seconds, reason=reason,
                       cache_hit=cache_hit, bytes_sent=bytes_sent, path=path, image_format=image_format,
                       client=client)


@_never_raises
def s3_fetch(seconds: float, nbytes: int) -> None:
    """An original was read from S3 (``nbytes`` received)."""
    metrics.S3_FETCH_SECONDS.observe(max(0.0, seconds))
    if nbytes > 0:
        metrics.S3_FETCHED_BYTES.inc(nbytes)


@_never_raises
def rendered(seconds: float) -> None:
    """A result was rendered (decode, transform and encode)."""
    metrics.RENDER_SECONDS.observe(max(0.0, seconds))


@_never_raises
def result_storage(hit: bool) -> None:
    """A result-storage lookup."""
    metrics.RESULT_STORAGE.labels("hit" if hit else "miss").inc()


@_never_raises
def result_stored(outcome: str) -> None:
    """A result was written: ``stored`` (kept), ``withdrawn`` (deleted again, its original changed
    while it was rendered) or ``failed``."""
    metrics.RESULT_STORAGE_WRITES.labels(outcome).inc()


@_never_raises
def memory_hit(tier: str) -> None:
    """Served from a worker's memory (:mod:`thumbor_plugins.memory`): an original S3 confirmed
    unchanged (``originals``), or a result (``results``)."""
    metrics.MEMORY_HITS.labels(tier).inc()


@_never_raises
def purge_delete_failed(keys: int) -> None:
    """A purge's DeleteObjects refused ``keys`` variants (they are still there)."""
    metrics.PURGE_DELETE_FAILURES.inc(max(0, keys))


@_never_raises
def intermediate(event: str) -> None:
    """A huge original's stored intermediate was ``made`` or ``used``."""
    metrics.INTERMEDIATES.labels(event).inc()


@_never_raises
def warm_queue_depth(depth: int) -> None:
    """Pending warm/purge jobs."""
    metrics.WARM_QUEUE_DEPTH.set(max(0, depth))

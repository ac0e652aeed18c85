"""Observation hooks: the one place the rest of the package reports what happened (metrics and
the access log subscribe here). Every function is cheap and never raises.

Contract (callers):
- ``request_finished(...)``: once per HTTP request, from the handlers' ``on_finish``.
- ``s3_fetch(seconds, nbytes)``: once per original read by the loader (successful or not).
- ``rendered(seconds)``: decode + transform + encode time of a result-storage miss.
- ``result_storage(hit)``: once per result-storage lookup.
- ``warm_queue_depth(n)``: whenever the events queue changes.
"""

from __future__ import annotations


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
) -> None:
    """``kind``: image | event | health | metrics | other. ``reason``: the rejection reason word
    (bad_signature, expired, too_large, too_many_pixels, overload, ...) or None. ``path`` is the
    request path; implementations must not log a full signature."""


def s3_fetch(seconds: float, nbytes: int) -> None:
    """An original was read from S3 (``nbytes`` received)."""


def rendered(seconds: float) -> None:
    """A result was rendered (decode, transform and encode)."""


def result_storage(hit: bool) -> None:
    """A result-storage lookup."""


def warm_queue_depth(depth: int) -> None:
    """Pending warm/purge jobs."""

"""Variants made at upload time, removed at delete time: S3 object events → jobs.

- :mod:`.payload`: MinIO's notification JSON → :class:`ObjectEvent` records (pure).
- :mod:`.seaweedfs`: SeaweedFS's filer webhook JSON (the embedded stack) → the same records (pure).
- :mod:`.jobs`: the job model, :class:`Job` (warm or purge one original), and which records
  become jobs under the server's settings (pure).
- :mod:`.warm`: :func:`warm_requests`, the ONE list of (url, accept) a warm renders — used by
  the events endpoint and by ``imgstack warm`` (pure).
- :mod:`.queue`: :class:`JobQueue`, bounded, coalescing, a few workers (asyncio only).
- :mod:`.runner`: :class:`Runner`, runs a job inside Thumbor (S3 purge, loopback renders).

The HTTP endpoint is ``thumbor_plugins.handlers.events``; the CLI is ``thumbor_plugins.cli.warm``
and ``thumbor_plugins.cli.purge``.

Errors: :class:`PayloadError` (not a notification: 400), :class:`QueueFull` (503, MinIO retries).
"""

from .jobs import Job, image_of, job_for, jobs_for
from .payload import PURGE, WARM, ObjectEvent, PayloadError, action_for, parse_payload
from .queue import JobQueue, Outcome, QueueFull
from .warm import ACCEPT_CLASSES, WARM_LINK_SECONDS, WarmRequest, warm_link_lifetime, warm_requests

__all__ = [
    "ACCEPT_CLASSES",
    "PURGE",
    "WARM",
    "WARM_LINK_SECONDS",
    "Job",
    "JobQueue",
    "ObjectEvent",
    "Outcome",
    "PayloadError",
    "QueueFull",
    "WarmRequest",
    "action_for",
    "image_of",
    "job_for",
    "jobs_for",
    "parse_payload",
    "warm_link_lifetime",
    "warm_requests",
]

"""``POST /events/minio`` (MinIO's bucket-notification webhook) and ``POST /events/seaweedfs``
(SeaweedFS's filer webhook, the embedded stack) → the same warm / purge jobs: one route and one
payload parser per source, one pipeline behind them.

Off unless ``IMGSTACK_EVENTS_TOKEN`` is set (no route at all). Answers:

- 401: no ``Authorization: Bearer <IMGSTACK_EVENTS_TOKEN>`` (compared in constant time), checked
  from the headers before a byte of the body is read;
- 413: a body over ``IMGSTACK_EVENTS_MAX_BODY_BYTES``, refused from its ``Content-Length``; a
  chunked one is cut off by tornado as soon as it grows past the limit (400); never buffered whole;
- 400: not a payload of the route's source;
- 200: the event's jobs are done — or there was nothing to do (other event types, buckets outside
  ``IMGSTACK_ALLOWED_BUCKETS``, keys the loader refuses: logged and ignored);
- 503: the queue is full (``IMGSTACK_EVENTS_QUEUE_SIZE``), a job failed, or the jobs did not
  finish within :data:`ACK_TIMEOUT` seconds.

Acknowledge-when-done (MinIO): an event is answered 2xx only after its jobs completed. MinIO (with a
queue dir) keeps every event it could not deliver and replays it, so a Thumbor restart, a full
queue or a failed S3 call loses nothing: the event comes back. Jobs are idempotent (purge, then
render), so a replay of work already done only costs time. A job still running at the timeout
keeps running; the replay joins it if it is still pending, or redoes it.

Acknowledge-when-purged (SeaweedFS): its filer sends the events of one file one at a time, each
after the previous one was answered, and retries a few times only. Waiting for an upload's
renders would hold back the next overwrite or delete of that file (stale pictures served
meanwhile), so an upload becomes a purge job and a warm job, and the event is answered once the
purge is done; the renders go on in the queue (a failed one is rendered on the first request).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from tornado.web import stream_request_body

from .. import observe
from ..events import PURGE, WARM, JobQueue, ObjectEvent, PayloadError, QueueFull, jobs_for, parse_payload, seaweedfs
from ..events.runner import Runner
from ..settings import settings_of
from ..thumbor_adapter import cap_body
from .base import ObservedHandler, bearer_matches

logger = logging.getLogger("imgstack.events")

#: seconds an event waits for its jobs before answering 503 (MinIO retries)
ACK_TIMEOUT = 25.0


@dataclass(frozen=True)
class EventSource:
    """One sender: its payload parser, and whether its events are answered once the purge is
    done (True) or once every job is (False)."""

    parse: Callable[[bytes], list[ObjectEvent]]
    ack_when_purged: bool


#: route -> its sender
SOURCES: dict[str, EventSource] = {
    "/events/minio": EventSource(parse_payload, ack_when_purged=False),
    "/events/seaweedfs": EventSource(seaweedfs.parse_payload, ack_when_purged=True),
}


@stream_request_body
class EventsHandler(ObservedHandler):
    kind = "event"

    def initialize(self, context: Any, queue: JobQueue, token: str,  # type: ignore[override] # route arguments
                   source: EventSource) -> None:
        super().initialize(context)
        self.source = source
        self.queue = queue
        self.token = token
        self.limit = self.service_settings.events_max_body_bytes
        self._chunks: list[bytes] = []

    def prepare(self) -> None:
        """Runs once the headers are in, before any of the body is read (stream_request_body)."""
        if self.request.method != "POST":
            return
        if not self._authorized():
            self.set_header("WWW-Authenticate", 'Bearer realm="imgstack events"')
            self._refuse_unread(401, "unauthorized")
            return
        declared = self.request.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.limit:
            self._refuse_unread(413, "too_large", detail=f"event bodies are limited to {self.limit} bytes")
            return
        # tornado refuses a longer chunked body as it arrives (400, connection closed)
        cap_body(self.request.connection, self.limit)

    def _refuse_unread(self, status: int, reason: str, **body: Any) -> None:
        """Answer before the body was read. Tornado then closes the connection rather than read
        the body; ``Connection: close`` says so, or a keep-alive client would send its next request
        on a connection being closed under it (seen in bench/soak.py as failed requests)."""
        self.set_header("Connection", "close")
        self._answer(status, reason, **body)
        self.finish()

    def data_received(self, chunk: bytes) -> None:
        if not self._finished:
            self._chunks.append(chunk)  # at most self.limit bytes: tornado checks before passing them

    def check_xsrf_cookie(self) -> None:  # a webhook has no cookies
        return None

    def _answer(self, status: int, reason: str | None = None, **body: Any) -> None:
        self.rejection = reason
        if status == 503:
            self.set_header("Retry-After", "5")
        self.write_json(status, {"status": status, **({"reason": reason} if reason else {}), **body})

    def _authorized(self) -> bool:
        return bearer_matches(self.request.headers.get("Authorization"), self.token)

    async def post(self) -> None:
        if self._finished:  # refused in prepare or while the body arrived
            return
        try:
            events = self.source.parse(b"".join(self._chunks))
        except PayloadError as error:
            self._answer(400, "bad_payload", detail=str(error))
            return
        jobs = jobs_for(events, self.service_settings)
        if not jobs:
            self._answer(200, jobs=0)
            return
        if self.source.ack_when_purged:
            jobs = [part for job in jobs
                    for part in ([replace(job, action=PURGE), job] if job.action == WARM else [job])]
        try:
            futures = self.queue.submit(jobs)
        except QueueFull as error:
            logger.warning("event refused: %s", error)
            self._answer(503, "overload", detail=str(error))
            return
        if self.source.ack_when_purged:
            futures = [future for job, future in zip(jobs, futures, strict=True) if job.action == PURGE]
        # asyncio.wait never cancels: a coalesced job may be awaited by other events too
        done, pending = await asyncio.wait(set(futures), timeout=ACK_TIMEOUT)
        if pending:
            self._answer(503, "timeout", detail=f"{len(pending)} jobs still running after {ACK_TIMEOUT:.0f}s")
            return
        if any(future.cancelled() for future in done):  # the queue was closed (shutting down)
            self._answer(503, "shutting_down")
            return
        outcomes = [future.result() for future in done]
        failed = [outcome.detail for outcome in outcomes if not outcome.ok]
        if failed:
            self._answer(503, "job_failed", detail="; ".join(failed))
            return
        self._answer(200, jobs=len(jobs), done=[
            {"action": o.job.action, "bucket": o.job.source.bucket, "key": o.job.source.key, **o.counts}
            for o in outcomes
        ])


def get_handlers(context: Any) -> list:
    """The events routes (sharing one queue), or nothing when ``IMGSTACK_EVENTS_TOKEN`` is not set."""
    settings = settings_of(context)
    if not settings.events_token:
        return []
    queue = JobQueue(
        Runner(context, superseded=lambda source: queue.has_pending(source)),
        size=settings.events_queue_size,
        workers=settings.events_workers,
        on_depth=observe.warm_queue_depth,
    )
    arguments = {"context": context, "queue": queue, "token": settings.events_token}
    return [(path, EventsHandler, {**arguments, "source": source})
            for path, source in SOURCES.items()]

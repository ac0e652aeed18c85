"""Running jobs inside the Thumbor process (server side: tornado + the shared async S3 client).

- purge: every variant of the original, whatever transformation or format, and nothing else: the
  direct children of its prefix named like a result (:func:`thumbor_plugins.derived.is_variant`),
  never the variants of ``<key>/...`` originals under a folder of the same name.
- warm: purge first (an overwrite must not leave stale variants), then request every
  :func:`~.warm.warm_requests` URL from this very Thumbor over loopback. The normal image handler
  renders it and stores it under the key a browser request would use; nothing here renders or
  names keys by itself. Thumbor stores a result *after* answering, so each 200 is followed by a
  bounded wait for the stored object, so that a job is done only when its variants are stored.

A warm stops early when a newer job for the same original is waiting (an overwrite or a delete
arrived meanwhile): its renders would be of an original that is no longer there, and the newer
job, which runs only after this one, purges and renders again anyway.

Failures: an S3 error, a 5xx or a connection error → ``ok=False`` (the event is answered 503 and
MinIO retries; both actions are idempotent), and so is a 401/403/410 (our own link refused: a
configuration error to fix, not an event to drop). Any other 4xx render (the original was deleted meanwhile, is
too large, is not an image) is final: logged, not retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from .. import derived, memory, observe
from ..s3 import DeleteFailed, NotFound, S3Error
from ..s3.aio import AsyncS3, for_config
from ..settings import settings_of
from ..sources import Source
from ..thumbor_adapter import loopback_base
from .jobs import Job
from .payload import PURGE, WARM
from .queue import Outcome
from .warm import WarmRequest, warm_link_lifetime, warm_requests

logger = logging.getLogger("imgstack.events")

#: seconds one loopback render may take
RENDER_TIMEOUT = 60.0
#: seconds to wait for a rendered result to appear in the derived bucket
STORE_WAIT = 5.0
#: seconds after a purge to purge once more. A render stores its result only if its original is
#: still there (thumbor_plugins.result_storage), but one that checked just before the delete can
#: finish its write just after the first purge; the second purge removes that write.
REPURGE_DELAY = 5.0
#: refused keys named in the log line of a failed purge
MAX_LOGGED_KEYS = 10


class Runner:
    """``await runner(job) -> Outcome``; one per Thumbor process."""

    def __init__(self, context: Any, *, s3: AsyncS3 | None = None, fetch: Any = None,
                 superseded: Callable[[Source], bool] = lambda source: False) -> None:
        self.superseded = superseded
        self.context = context
        self.settings = settings_of(context)
        self.s3 = s3 or for_config(context.config)
        self.derived_bucket = self.settings.derived_bucket
        self._fetch = fetch
        self._repurges: set[asyncio.Task] = set()

    def requests_for(self, job: Job) -> list[WarmRequest]:
        settings = self.settings
        return warm_requests(
            job.image,
            job.source,
            settings.presets,
            key=settings.security_key or "",
            base=loopback_base(self.context),
            algorithm=settings.signature_algorithm,
            auto_avif=settings.auto_avif,
            auto_webp=settings.auto_webp,
            expires_in=warm_link_lifetime(settings.max_link_lifetime),
        )

    async def __call__(self, job: Job) -> Outcome:
        started = time.monotonic()
        try:
            purged = await self.purge(job.source)
        except S3Error as error:
            logger.warning("purge of %s failed: %s", job.source.prefix, error)
            return Outcome(job, ok=False, detail=f"purge failed: {error}")
        counts = {"purged": purged}
        if job.action == PURGE:
            logger.info("purged %d variants of %s in %.2fs", purged, job.source.prefix, time.monotonic() - started)
            self._purge_again_later(job.source)
            return Outcome(job, ok=True, counts=counts)
        assert job.action == WARM
        outcome = await self._warm(job, counts)
        logger.info("warmed %s: %s in %.2fs", job.source.prefix, outcome.counts, time.monotonic() - started)
        return outcome

    async def purge(self, source: Source) -> int:
        """Delete exactly the variants of ``source`` (one listing of its prefix's direct children);
        how many."""
        keys = [info.key async for info in self.s3.list(self.derived_bucket, source.prefix, delimiter="/")
                if derived.is_variant(source, info.key)]
        try:
            await self.s3.delete(self.derived_bucket, keys)
        except DeleteFailed as error:
            # the variants still there stay reachable: counted and logged; the event fails and
            # MinIO retries it
            observe.purge_delete_failed(len(error.failed))
            shown = "; ".join(f"{key}: {reason}" for key, reason in list(error.failed.items())[:MAX_LOGGED_KEYS])
            logger.error("purge of %s: S3 refused to delete %d of %d variants: %s%s", source.prefix,
                         len(error.failed), len(keys), shown, " ..." if len(error.failed) > MAX_LOGGED_KEYS else "")
            raise
        finally:
            # after the deletes (some may have gone through): results read before them are
            # dropped from every worker's memory
            memory.generations().purged(source)
        return len(keys)

    def _purge_again_later(self, source: Source) -> asyncio.Task:
        async def repurge() -> None:
            await asyncio.sleep(REPURGE_DELAY)
            try:
                await self.s3.head(source.bucket, source.key)
                return  # uploaded again meanwhile: its own event purged and warmed; keep those
            except NotFound:
                pass
            except S3Error as error:
                # unknown: purge anyway; an extra purge costs renders, a missed one a leak
                logger.warning("second purge of %s: cannot check the original (%s); purging", source.prefix, error)
            try:
                late = await self.purge(source)
            except S3Error as error:
                logger.warning("second purge of %s failed: %s", source.prefix, error)
                return
            if late:
                logger.warning("second purge of %s removed %d results stored during the first", source.prefix, late)

        task = asyncio.ensure_future(repurge())
        self._repurges.add(task)
        task.add_done_callback(self._repurges.discard)
        return task

    async def _warm(self, job: Job, counts: dict[str, int]) -> Outcome:
        counts.update(stored=0, skipped=0, failed=0)
        wait_for_store = True
        # one at a time: renders are CPU-bound in this process; workers give the parallelism
        for index in range(len(self.requests_for(job))):
            if self.superseded(job.source):
                logger.info("warm of %s stopped: a newer event for it is waiting", job.source.prefix)
                counts["superseded"] = 1
                break
            # signed just before use: a slow job must not outlive its (expiring) links
            request = self.requests_for(job)[index]
            status = await self._get(request)
            if status == 200:
                if wait_for_store and not await self._stored(request.derived_key, job.source):
                    # e.g. a fallback image or a detection error: Thumbor serves but does not store
                    logger.warning("warm of %s answered 200 but %s was not stored", request.preset, request.derived_key)
                    wait_for_store = False
                    counts["skipped"] += 1
                else:
                    counts["stored"] += 1
            elif status in (401, 403, 410):
                # our own signed link refused: a configuration error, never final for the event
                logger.error("warm of %s %s refused with %d: check SECURITY_KEY and the link settings",
                             job.source.prefix, request.preset, status)
                counts["failed"] += 1
            elif 400 <= status < 500:
                logger.warning("warm of %s %s for %s: %d (not retried)", job.source.prefix, request.preset,
                               request.accept, status)
                counts["skipped"] += 1
                if status == 404:
                    break  # the original is gone (deleted after the upload): nothing to render
            else:
                counts["failed"] += 1
        ok = counts["failed"] == 0
        return Outcome(job, ok=ok, detail="" if ok else f"{counts['failed']} renders failed", counts=counts)

    async def _get(self, request: WarmRequest) -> int:
        if self._fetch is not None:
            return await self._fetch(request)
        from tornado.httpclient import AsyncHTTPClient

        try:
            response = await AsyncHTTPClient().fetch(
                request.url, headers={"Accept": request.accept}, raise_error=False,
                request_timeout=RENDER_TIMEOUT, follow_redirects=False,
            )
        except Exception as error:  # noqa: BLE001 - any transport failure is a retryable failure
            logger.warning("warm request for %s failed: %s", request.derived_key, error)
            return 599
        return response.code

    async def _stored(self, key: str, source: Source) -> bool:
        deadline = time.monotonic() + STORE_WAIT
        delay = 0.02
        while True:
            try:
                await self.s3.head(self.derived_bucket, key)
                return True
            except NotFound:
                pass
            except S3Error as error:
                logger.warning("cannot check %s: %s", key, error)
                return False
            if time.monotonic() >= deadline or self.superseded(source):
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)

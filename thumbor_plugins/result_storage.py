"""Thumbor result storage in the derived bucket: ``RESULT_STORAGE = 'thumbor_plugins.result_storage'``.

Holds the shared S3 client (composition, not inheritance). One GET per lookup, no HEAD first.
The key (:mod:`thumbor_plugins.derived`) comes from the request as verified by our handler (the
decision in its :class:`~thumbor_plugins.thumbor_adapter.RequestState`); a request that did not
pass through it is never stored.
``RESULT_STORAGE_EXPIRATION_SECONDS`` > 0 makes older results a miss. A failed write is logged and
the response still succeeds.

A stored render is checked against its original right after the write (one HEAD per stored
render, none per hit) and deleted again if the original is gone or not the one rendered: an
original deleted or overwritten while it was being rendered must not live on in a result stored
after the purge that its event triggered. Checking after the write, not before, leaves no gap:
an overwrite the check does not see comes after the write, so its purge lists the result and
deletes it. The original's ETag is kept in the result's metadata (``source-etag``): with
``IMGSTACK_REVALIDATE_ORIGINALS`` a hit is served only while the original still has it (one
HEAD per hit), for S3 servers that send no events.

A result read from S3 is kept in the worker's memory for a few seconds and served from there
(:class:`thumbor_plugins.memory.HotResults`: a purge on this server drops it at once).

Our image handler looks results up itself with :func:`lookup` (before the render lock, and again
after waiting for another request's render) and serves hits without Thumbor's pipeline; it then
marks the request (``RequestState.looked_up``) so that :meth:`Storage.get` does not read again.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from thumbor.result_storages import BaseStorage, ResultStorageResult

from . import memory, observe
from .s3 import NotFound, S3Error
from .s3.aio import AsyncS3, for_config
from .s3.types import ObjectData
from .settings import Settings
from .sources import Source
from .thumbor_adapter import RequestState, mimetype, state_of

logger = logging.getLogger("imgstack.result_storage")


#: metadata name of the original's ETag a result was rendered from
SOURCE_ETAG = "source-etag"


async def lookup(config: Any, key: str, source: Source | None = None) -> ObjectData | None:
    """The stored result under ``key``, or None (a miss): absent, older than
    ``RESULT_STORAGE_EXPIRATION_SECONDS``, unreadable (a broken result storage must not break
    rendering), or, with ``IMGSTACK_REVALIDATE_ORIGINALS``, rendered from an original that has
    since changed or gone. Counts the lookup in the metrics."""
    s3, settings = for_config(config), Settings.of(config)
    hot = memory.tiers(settings).results if source is not None else None
    data = hot.get(key) if hot is not None else None
    in_memory = data is not None
    if data is None:
        before = hot.generations.now(source) if hot is not None and source is not None else None
        try:
            data = await s3.get(settings.derived_bucket, key)
        except NotFound:
            data = None
        except S3Error as error:
            logger.warning("result storage read %s failed: %s", key, error)
            data = None
        if hot is not None and before is not None and data is not None:
            hot.put(key, data, before)
    if data is not None and _expired(settings.result_storage_expiration_seconds, data.last_modified):
        data = None
    if data is not None and source is not None and settings.revalidate_originals:
        data = data if await _still_from(s3, source, data.metadata.get(SOURCE_ETAG)) else None
    if data is None and hot is not None:
        hot.forget(key)
    elif in_memory:
        observe.memory_hit("results")
    observe.result_storage(hit=data is not None)
    return data


def held(settings: Settings, key: str) -> ObjectData | None:
    """The result under ``key`` when this worker's memory holds it and may serve it without
    asking S3 (within ``RESULT_STORAGE_EXPIRATION_SECONDS``; never with
    ``IMGSTACK_REVALIDATE_ORIGINALS``, whose hits each ask S3). None otherwise: :func:`lookup`
    decides. Counts nothing: a caller that serves it calls :func:`count_held`."""
    if settings.revalidate_originals:
        return None
    data = memory.tiers(settings).results.get(key)
    if data is None or _expired(settings.result_storage_expiration_seconds, data.last_modified):
        return None
    return data


def count_held() -> None:
    """A result :func:`held` gave was served: the metrics :func:`lookup` keeps for such a hit."""
    observe.memory_hit("results")
    observe.result_storage(hit=True)


def _expired(ttl: int, last_modified: datetime.datetime | None) -> bool:
    if ttl <= 0 or last_modified is None:
        return False
    age = datetime.datetime.now(datetime.UTC) - last_modified
    return age.total_seconds() > ttl


async def _still_from(s3: AsyncS3, source: Source, etag: str | None) -> bool:
    """True while ``source`` exists with ``etag``; a result without one (stored before the ETag
    was kept) or an unreachable S3 counts as stale: render again rather than risk it."""
    if not etag:
        return False
    try:
        return (await s3.head(source.bucket, source.key)).etag == etag
    except S3Error:
        return False


class Storage(BaseStorage):
    def __init__(self, context) -> None:  # noqa: ANN001
        super().__init__(context)
        self.s3 = for_config(context.config)
        self.bucket = Settings.of(context.config).derived_bucket
        self._last_modified: datetime.datetime | None = None

    @property
    def state(self) -> RequestState:
        return state_of(self.context.request)

    @property
    def key(self) -> str | None:
        decision = self.state.decision
        return decision.derived_key if decision is not None else None

    async def get(self) -> ResultStorageResult | None:
        decision = self.state.decision
        if decision is None or self.state.looked_up:
            return None
        data = await lookup(self.context.config, decision.derived_key, decision.source)
        if data is None:
            return None
        self._last_modified = data.last_modified
        return ResultStorageResult(
            buffer=data.body,
            metadata={
                "LastModified": data.last_modified,
                "ContentType": data.content_type,
                "ContentLength": len(data.body),
            },
            successful=True,
        )

    async def put(self, image_bytes: bytes) -> str | None:
        key = self.key
        if key is None:
            return None
        etag = self.state.source_etag
        try:
            await self.s3.put(self.bucket, key, image_bytes, content_type=mimetype(image_bytes),
                              metadata={SOURCE_ETAG: etag} if etag else None)
        except S3Error as error:
            logger.error("result storage write %s failed: %s", key, error)
            observe.result_stored("failed")
            return None
        if not await self._source_unchanged(key):
            await self._withdraw(key)
            observe.result_stored("withdrawn")
            return None
        observe.result_stored("stored")
        return key

    async def _source_unchanged(self, key: str) -> bool:
        state = self.state
        if state.source_etag is None or state.decision is None:
            return True  # not loaded by our loader (nothing to compare with)
        source = state.decision.source
        try:
            current = await self.s3.head(source.bucket, source.key)
        except NotFound:
            logger.info("not keeping %s: its original was deleted while rendering", key)
            return False
        except S3Error as error:
            logger.warning("not keeping %s: cannot check its original: %s", key, error)
            return False
        if current.etag != state.source_etag:
            logger.info("not keeping %s: its original changed while rendering", key)
            return False
        return True

    async def _withdraw(self, key: str) -> None:
        """Delete a result just stored from an original that has changed since, and drop what
        this server's workers may have read of it meanwhile (its original's hot results)."""
        try:
            await self.s3.delete(self.bucket, [key])
        except S3Error as error:
            logger.error("result storage delete of %s failed (rendered from a changed original): %s", key, error)
        decision = self.state.decision
        if decision is not None:
            memory.generations().purged(decision.source)

    async def last_updated(self) -> datetime.datetime | None:
        return self._last_modified

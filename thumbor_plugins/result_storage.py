"""Thumbor result storage in the derived bucket: ``RESULT_STORAGE = 'thumbor_plugins.result_storage'``.

Holds the shared S3 client (composition, not inheritance). One GET per lookup, no HEAD first.
The key (:mod:`thumbor_plugins.derived`) comes from the request as verified by our handler
(``context.request.imgstack``); a request that did not pass through it is never stored.
``RESULT_STORAGE_EXPIRATION_SECONDS`` > 0 makes older results a miss. A failed write is logged and
the response still succeeds.

A render is stored only if its original is still there, unchanged (one HEAD per stored render,
none per hit): an original deleted or overwritten while it was being rendered must not live on in
a result stored after the purge that its event triggered.
"""

from __future__ import annotations

import datetime
import logging

from thumbor.result_storages import BaseStorage, ResultStorageResult

from . import observe
from .s3 import NotFound, S3Error
from .s3.aio import for_config

logger = logging.getLogger("imgstack.result_storage")


class Storage(BaseStorage):
    def __init__(self, context) -> None:  # noqa: ANN001
        super().__init__(context)
        self.s3 = for_config(context.config)
        self.bucket = context.config.IMGSTACK_DERIVED_BUCKET
        self._last_modified: datetime.datetime | None = None

    @property
    def key(self) -> str | None:
        info = getattr(self.context.request, "imgstack", None)
        return info.derived_key if info is not None else None

    def _expired(self, last_modified: datetime.datetime | None) -> bool:
        ttl = int(self.context.config.RESULT_STORAGE_EXPIRATION_SECONDS or 0)
        if ttl <= 0 or last_modified is None:
            return False
        age = datetime.datetime.now(datetime.timezone.utc) - last_modified
        return age.total_seconds() > ttl

    async def get(self) -> ResultStorageResult | None:
        key = self.key
        if key is None:
            return None
        data = await self._read(key)
        if data is not None and self._expired(data.last_modified):
            data = None
        observe.result_storage(hit=data is not None)
        self.context.request.imgstack_cache_hit = data is not None
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

    async def _read(self, key: str):  # noqa: ANN202
        try:
            return await self.s3.get(self.bucket, key)
        except NotFound:
            return None
        except S3Error as error:
            # a broken result storage must not break rendering: treat as a miss
            logger.warning("result storage read %s failed: %s", key, error)
            return None

    async def put(self, image_bytes: bytes) -> str | None:
        key = self.key
        if key is None:
            return None
        from thumbor.engines import BaseEngine

        if not await self._source_unchanged():
            return None
        try:
            await self.s3.put(self.bucket, key, image_bytes, content_type=BaseEngine.get_mimetype(image_bytes))
        except S3Error as error:
            logger.error("result storage write %s failed: %s", key, error)
            return None
        return key

    async def _source_unchanged(self) -> bool:
        request = self.context.request
        etag = getattr(request, "imgstack_source_etag", None)
        if etag is None:
            return True  # not loaded by our loader (nothing to compare with)
        source = request.imgstack.source
        try:
            current = await self.s3.head(source.bucket, source.key)
        except NotFound:
            logger.info("not storing %s: its original was deleted while rendering", self.key)
            return False
        except S3Error as error:
            logger.warning("not storing %s: cannot check its original: %s", self.key, error)
            return False
        if current.etag != etag:
            logger.info("not storing %s: its original changed while rendering", self.key)
            return False
        return True

    async def last_updated(self) -> datetime.datetime | None:
        return self._last_modified

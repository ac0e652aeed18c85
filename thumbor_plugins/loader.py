"""Thumbor loader for originals in S3/MinIO: ``LOADER = 'thumbor_plugins.loader'``.

Bucket and key come from the image path (:mod:`thumbor_plugins.sources`); the object is streamed
and refused past ``IMGSTACK_MAX_SOURCE_BYTES`` (413) without reading the rest; a header declaring
more than ``IMGSTACK_MAX_PIXELS`` is refused (422) before decoding. Failures are values, as Thumbor
expects: missing → 404 (or the fallback image), S3 unreachable → 502, timeout → 504.
"""

from __future__ import annotations

import logging
import time

from thumbor.loaders import LoaderResult

from . import limits, observe, sources
from .s3 import NotFound, S3Error, TooLarge, Unavailable
from .s3.aio import for_config

logger = logging.getLogger("imgstack.loader")


def validate(context, url: str) -> bool:  # noqa: ANN001 - Thumbor's signature
    try:
        sources.from_config(url, context.config)
    except sources.SourceError:
        return False
    return True


def _failure(error: S3Error) -> LoaderResult:
    if isinstance(error, NotFound):
        code = LoaderResult.ERROR_NOT_FOUND
    elif isinstance(error, Unavailable) and error.timeout:
        code = LoaderResult.ERROR_TIMEOUT
    elif isinstance(error, TooLarge):
        code = 413
    else:
        code = LoaderResult.ERROR_UPSTREAM
    return LoaderResult(successful=False, error=code)


async def _fetch(context, source: sources.Source) -> LoaderResult:  # noqa: ANN001
    s3 = for_config(context.config)
    started, before = time.perf_counter(), s3.bytes_read
    try:
        data = await s3.get(source.bucket, source.key, max_bytes=int(context.config.IMGSTACK_MAX_SOURCE_BYTES))
    finally:
        observe.s3_fetch(time.perf_counter() - started, s3.bytes_read - before)
    info = getattr(context.request, "imgstack", None)
    if info is None or info.source == source:
        # the request's own original, not a watermark()'s or frame()'s second image: rendering is
        # timed from here to the response (thumbor_plugins.app), and the result storage stores the
        # render only if the original is still this one
        context.request.imgstack_loaded_at = time.perf_counter()
        context.request.imgstack_source_etag = data.etag
    try:
        limits.check_pixels(data.body, int(context.config.IMGSTACK_MAX_PIXELS), int(context.config.IMGSTACK_MAX_FRAMES))
    except limits.TooManyPixels as error:
        logger.warning("refused %s/%s: %s", source.bucket, source.key, error)
        context.request.imgstack_rejection = "too_many_pixels"
        return LoaderResult(successful=False, error=422)
    return LoaderResult(
        buffer=data.body,
        metadata={"LastModified": data.last_modified, "ContentType": data.content_type, "ETag": data.etag},
    )


async def load(context, url: str) -> LoaderResult:  # noqa: ANN001
    try:
        source = sources.from_config(url, context.config)
    except sources.SourceError as error:
        return LoaderResult(successful=False, error=error.status)
    try:
        return await _fetch(context, source)
    except NotFound as error:
        fallback = context.config.IMGSTACK_FALLBACK_IMAGE
        if not fallback:
            return _failure(error)
        try:
            result = await _fetch(context, sources.locate(fallback, allowed_buckets=(fallback.split("/")[0],)))
        except S3Error as fallback_error:
            logger.error("fallback image %s unavailable: %s", fallback, fallback_error)
            return _failure(error)
        # a stand-in must not be stored as the rendition of the real image; Thumbor then serves
        # it with MAX_AGE_TEMP_IMAGE
        context.request.prevent_result_storage = True
        return result
    except S3Error as error:
        if isinstance(error, TooLarge):
            context.request.imgstack_rejection = "too_large"
        else:
            logger.warning("S3 read of %s/%s failed: %s", source.bucket, source.key, error)
        return _failure(error)

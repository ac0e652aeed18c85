"""Thumbor loader for originals in S3/MinIO: ``LOADER = 'thumbor_plugins.loader'``.

Bucket and key come from the image path (:mod:`thumbor_plugins.sources`). The object is streamed:

1. refused past ``IMGSTACK_MAX_SOURCE_BYTES`` (413) without reading the rest;
2. its header, the first bytes received, is checked against the caps of :mod:`.limits` (pixels
   served, decode memory, plausibility: 422) before the rest is downloaded;
3. a huge original whose request can be served from its stored intermediate
   (:mod:`.mezzanine`) is not downloaded at all: the intermediate is, if it was made from this
   very version of the original (its ETag, from the same response);
4. otherwise the body is read, into memory or, past ``IMGSTACK_SPOOL_BYTES``, into an unlinked
   temporary file that the engine reads in strips (:mod:`.spool`); and the intermediate, when
   the original deserves one, is made from it, stored, and rendered from.

Failures are values, as Thumbor expects: missing → 404 (or the fallback image), S3 unreachable →
502, timeout → 504.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import pyvips
from cachetools import LRUCache
from thumbor.loaders import LoaderResult

from . import engine, limits, memory, mezzanine, observe, singleflight, sources, spool
from .result_storage import SOURCE_ETAG
from .s3 import NotFound, S3Error, TooLarge, Unavailable
from .s3.aio import AsyncS3, for_config
from .settings import Settings, settings_of
from .thumbor_adapter import state_of

logger = logging.getLogger("imgstack.loader")

#: bytes of an original read before its header is judged (JPEG's EXIF and ICC segments come first)
_HEAD = 256 * 1024
#: originals of this process's recent misses that have an intermediate (and what it is), the 4096
#: most recently used: a later miss asks for the intermediate and the original's ETag (HEAD) at once,
#: instead of opening the original's GET only to drop it (an S3 server may go on reading)
_known_huge: LRUCache[sources.Source, mezzanine.Plan] = LRUCache(maxsize=4096)


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


def _limits(settings: Settings, *, own: bool) -> limits.Limits:
    # a watermark()'s or frame()'s image is read whole by Thumbor's filters, never downscaled first
    streams = own and settings.engine == "thumbor_plugins.vips_engine"
    return limits.Limits(
        max_pixels=settings.max_pixels,
        max_frames=settings.max_frames,
        max_decode_bytes=settings.max_decode_memory,
        max_ratio=settings.max_decompression_ratio,
        stream_to=(settings.max_width, settings.max_height) if streams else None,
        threads=settings.vips_concurrency,
    )


class _Refused(Exception):
    """Over a cap of :mod:`.limits`: answered 422."""


async def _fetch(context, source: sources.Source) -> LoaderResult:  # noqa: ANN001
    settings = settings_of(context)
    s3 = for_config(context.config)
    state = state_of(context.request)
    # the request's own original, not a watermark()'s or frame()'s second image: rendering is
    # timed from here to the response (thumbor_plugins.app), the result storage stores the render
    # only if the original is still this one, and only it may render from an intermediate
    own = state.decision is None or state.decision.source == source
    started, before = time.perf_counter(), s3.bytes_read
    known = _known_huge.get(source) if own and engine.in_output_terms(context.request) else None
    if known is not None:
        found = await _known_intermediate(s3, settings, source, known)
        if found is not None:
            intermediate, info = found
            state.loaded_at, state.source_etag, state.intermediate_of = time.perf_counter(), info.etag, known.original
            observe.s3_fetch(time.perf_counter() - started, s3.bytes_read - before)
            return LoaderResult(buffer=intermediate, metadata={"LastModified": info.last_modified, "ETag": info.etag})
    caps = _limits(settings, own=own)
    recent = memory.tiers(settings).originals
    held = recent.get(source)
    stream: Any = None
    async with contextlib.AsyncExitStack() as stack:
        try:
            opened = await stack.enter_async_context(s3.open(
                source.bucket, source.key, max_bytes=settings.max_source_bytes,
                if_none_match=held.etag if held is not None else None))
            # unchanged since this worker read it (S3 said so): its bytes again, from memory
            stream = held.replay() if opened.not_modified and held is not None else opened
            if stream is not opened:
                observe.memory_hit("originals")
            elif held is not None:
                recent.forget(source)  # superseded: kept again below if the new one fits
            if own:
                state.loaded_at = time.perf_counter()
                state.source_etag = stream.etag
            head = await stream.peek(_HEAD)
            # a GIF's frames are counted over its whole body; other headers come first
            early = stream.length is not None and head[:3] != b"GIF"
            size = _check(head, caps, stream.length, source) if early else None
            plan = _plan(context, size, head) if own and size is not None else None
            _remember(source, plan)
            if plan is not None:
                # one worker makes it; the others wait here, before downloading, then find it
                lock = singleflight.shared().hold(f"mezzanine:{settings.derived_bucket}/{mezzanine.key(source)}")
                await stack.enter_async_context(lock)
                found_body = await _stored_intermediate(s3, settings, source, stream.etag, plan)
                if found_body is not None:
                    state.intermediate_of = plan.original
                    return _result(found_body, stream)
            body = await _read_body(stream, settings)
        finally:
            # the stream's bytes reach the client's counter only when it closes, after this
            received = stream.received if stream is not None else s3.bytes_read - before
            observe.s3_fetch(time.perf_counter() - started, received)
        if size is None:
            _check(body, caps, len(body), source)
        if plan is not None:
            made = await _intermediate(context, s3, settings, source, stream.etag, body, plan)
            if made is not None:
                state.intermediate_of = plan.original
                body = made
        elif stream is opened and isinstance(body, bytes):
            recent.put(source, memory.Original(stream.etag, body, stream.content_type, stream.last_modified))
    return _result(body, stream)


async def _read_body(stream: Any, settings: Settings) -> Any:
    """The whole body: in memory, or past ``IMGSTACK_SPOOL_BYTES`` in a temporary file."""
    if stream.length is None or stream.length <= settings.spool_bytes:
        return await stream.read()
    file = spool.temporary(settings.spool_dir)
    try:
        await stream.read_into(file)
    except BaseException:
        file.close()
        raise
    return spool.Spooled(file)


def _remember(source: sources.Source, plan: mezzanine.Plan | None) -> None:
    if plan is None:
        _known_huge.pop(source, None)
    else:
        _known_huge[source] = plan


async def _known_intermediate(s3: AsyncS3, settings: Settings, source: sources.Source,
                              plan: mezzanine.Plan) -> tuple[bytes, Any] | None:
    """The intermediate of a known huge original and the original's HEAD, both asked at once; None
    (then the original is read as for any miss) unless the intermediate is the one this server
    would make from the original as it is now."""
    info, data = await asyncio.gather(
        s3.head(source.bucket, source.key), s3.get(settings.derived_bucket, mezzanine.key(source)),
        return_exceptions=True,
    )
    if isinstance(info, BaseException) or isinstance(data, BaseException):
        for error in (info, data):
            if isinstance(error, BaseException) and not isinstance(error, S3Error):
                raise error
        return None  # gone, not made yet, or S3 failing: the plain path decides
    if not _made_from(data.metadata, info.etag, plan):
        return None
    observe.intermediate("used")
    return data.body, info


def _made_from(metadata: dict[str, str], etag: str, plan: mezzanine.Plan) -> bool:
    """An intermediate made from this version of the original, under the same size caps."""
    return bool(etag) and metadata.get(SOURCE_ETAG) == etag and metadata.get(mezzanine.TAG) == plan.tag


def _check(data: Any, caps: limits.Limits, length: int | None, source: sources.Source) -> limits.Declared | None:
    try:
        return limits.check(data, caps, length)
    except limits.TooManyPixels as error:
        logger.warning("refused %s/%s: %s", source.bucket, source.key, error)
        raise _Refused(str(error)) from error


def _result(body: Any, stream: Any) -> LoaderResult:
    return LoaderResult(
        buffer=body,
        metadata={"LastModified": stream.last_modified, "ContentType": stream.content_type, "ETag": stream.etag},
    )


def _plan(context, size: limits.Declared, head: bytes) -> mezzanine.Plan | None:  # noqa: ANN001
    settings = settings_of(context)
    if not engine.in_output_terms(context.request):
        return None
    extension = {b"\xff\xd8": ".jpg", b"\x89P": ".png"}.get(head[:2]) or (".webp" if head[8:12] == b"WEBP" else None)
    return mezzanine.plan(
        size, extension,
        palette=extension == ".png" and len(head) > 25 and head[25] == 3,
        cap=(settings.max_width, settings.max_height),
        min_pixels=settings.mezzanine_min_pixels,
    )


async def _stored_intermediate(s3: AsyncS3, settings: Settings, source: sources.Source, etag: str,
                               plan: mezzanine.Plan) -> bytes | None:
    """The stored intermediate made from this version of the original, or None."""
    try:
        data = await s3.get(settings.derived_bucket, mezzanine.key(source))
    except NotFound:
        return None
    except S3Error as error:
        logger.warning("cannot read the intermediate of %s/%s: %s", source.bucket, source.key, error)
        return None
    if not _made_from(data.metadata, etag, plan):
        return None  # made from another version or under other caps: it will be made again
    observe.intermediate("used")
    return data.body


async def _intermediate(context, s3: AsyncS3, settings: Settings, source: sources.Source,  # noqa: ANN001
                        etag: str, body: Any, plan: mezzanine.Plan) -> bytes | None:
    """Make the intermediate from the original's ``body`` in a render thread (Thumbor's pool,
    ``ENGINE_THREADPOOL_SIZE``), store it, and return it to render from; None (render from the
    original) when libvips cannot make it."""
    try:
        made: bytes = await context.thread_pool.queue(_make, body, plan, settings)
    except pyvips.Error as error:
        logger.warning("cannot make the intermediate of %s/%s: %s", source.bucket, source.key, error)
        return None
    observe.intermediate("made")
    metadata = {mezzanine.TAG: plan.tag, **({SOURCE_ETAG: etag} if etag else {})}
    try:
        await s3.put(settings.derived_bucket, mezzanine.key(source), made, content_type=f"image/{plan.format}",
                     metadata=metadata)
    except S3Error as error:
        logger.error("storing the intermediate of %s/%s failed: %s", source.bucket, source.key, error)
    return made


def _make(body: Any, plan: mezzanine.Plan, settings: Settings) -> bytes:
    from .vips_engine import release_memory, render_thread_priority

    render_thread_priority(settings.render_niceness)
    try:
        return mezzanine.make(body, plan, settings.mezzanine_quality)
    finally:
        release_memory()


async def load(context, url: str) -> LoaderResult:  # noqa: ANN001
    try:
        source = sources.from_config(url, context.config)
    except sources.SourceError as error:
        return LoaderResult(successful=False, error=error.status)
    try:
        return await _fetch(context, source)
    except _Refused:
        state_of(context.request).rejection = "too_many_pixels"
        return LoaderResult(successful=False, error=422)
    except NotFound as error:
        memory.tiers(settings_of(context)).originals.forget(source)
        fallback = settings_of(context).fallback_image
        if not fallback:
            return _failure(error)
        try:
            result = await _fetch(context, sources.locate(fallback, allowed_buckets=(fallback.split("/")[0],)))
        except (S3Error, _Refused) as fallback_error:
            logger.error("fallback image %s unavailable: %s", fallback, fallback_error)
            return _failure(error)
        # a stand-in must not be stored as the rendition of the real image; Thumbor then serves
        # it with MAX_AGE_TEMP_IMAGE
        context.request.prevent_result_storage = True
        return result
    except S3Error as error:
        if isinstance(error, TooLarge):
            state_of(context.request).rejection = "too_large"
        else:
            logger.warning("S3 read of %s/%s failed: %s", source.bucket, source.key, error)
        return _failure(error)
    except OSError as error:  # the spool folder is full or gone: try again later, elsewhere
        logger.error("cannot spool %s/%s to %s: %s", source.bucket, source.key,
                     settings_of(context).spool_dir or "the temporary folder", error)
        return LoaderResult(successful=False, error=503)

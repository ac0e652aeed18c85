"""Liveness and readiness.

- ``/healthcheck`` (liveness) is Thumbor's: the process answers. :class:`LivenessHandler` answers
  the same way (``WORKING``) and is mounted only when ``thumbor.handler_lists.healthcheck`` is not
  in ``HANDLER_LISTS`` — then liveness probes are counted in the metrics too.
- ``/healthcheck/ready`` (readiness): every originals bucket (``IMGSTACK_ALLOWED_BUCKETS``,
  ``IMGSTACK_BUCKET``) and the derived bucket (``IMGSTACK_DERIVED_BUCKET``) answer a HEAD with
  the configured credentials. 200 ``{"status": "ready", ...}`` or 503 ``{"status":
  "unavailable", "reason": ..., "buckets": {bucket: word}}``. The words (ok, missing,
  access_denied, timeout, unreachable) say what failed without exposing endpoints or errors; the
  details go to the ``imgstack.health`` log.

Bounded: all buckets are checked concurrently and the whole check is cut at one S3 attempt's
connect + read timeout. A result is reused for :data:`CACHE_SECONDS` and concurrent probes share
one check, so frequent probes from several balancers do not multiply S3 calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ..s3 import AccessDenied, NotFound, S3Error, Unavailable
from ..s3.aio import for_config
from ..settings import Settings
from .base import ObservedHandler

logger = logging.getLogger("imgstack.health")

CACHE_SECONDS = 1.0


@dataclass(frozen=True)
class Readiness:
    buckets: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return all(word == "ok" for word in self.buckets.values())

    def body(self) -> dict[str, Any]:
        if self.ready:
            return {"status": "ready", "buckets": self.buckets}
        failed = ", ".join(f"{bucket}: {word}" for bucket, word in self.buckets.items() if word != "ok")
        return {"status": "unavailable", "reason": f"S3 bucket {failed}", "buckets": self.buckets}


def buckets(settings: Settings) -> list[str]:
    """The buckets the service needs: originals first, then the derived bucket."""
    return list(dict.fromkeys(name for name in (*settings.readable_buckets, settings.derived_bucket) if name))


def _word(error: BaseException) -> str:
    if isinstance(error, NotFound):
        return "missing"
    if isinstance(error, AccessDenied):
        return "access_denied"
    if isinstance(error, asyncio.TimeoutError) or (isinstance(error, Unavailable) and error.timeout):
        return "timeout"
    return "unreachable"


async def check(config: Any) -> Readiness:
    """Check every bucket now (no cache)."""
    s3 = for_config(config)
    names = buckets(Settings.of(config))
    limit = s3.settings.connect_timeout + s3.settings.read_timeout

    async def one(bucket: str) -> str:
        try:
            await asyncio.wait_for(s3.bucket_reachable(bucket), timeout=limit)
        except (TimeoutError, S3Error) as error:
            logger.warning("readiness: bucket %s: %s", bucket, error or type(error).__name__)
            return _word(error)
        return "ok"

    words = await asyncio.gather(*(one(bucket) for bucket in names))
    return Readiness(dict(zip(names, words, strict=True)))


class _Cache:
    """The last result of this process, and the check in progress (one per event loop)."""

    def __init__(self) -> None:
        self.result: Readiness | None = None
        self.at = 0.0
        self.pending: asyncio.Future | None = None

    async def get(self, config: Any) -> Readiness:
        if self.result is not None and time.monotonic() - self.at < CACHE_SECONDS:
            return self.result
        if self.pending is None or self.pending.get_loop() is not asyncio.get_running_loop():
            self.pending = asyncio.ensure_future(self._run(config))
        return await asyncio.shield(self.pending)

    async def _run(self, config: Any) -> Readiness:
        try:
            result = await check(config)
            self.result, self.at = result, time.monotonic()
            return result
        finally:
            self.pending = None


_cache = _Cache()


class ReadinessHandler(ObservedHandler):
    kind = "health"

    async def get(self) -> None:
        readiness = await _cache.get(self.context.config)
        self.write_json(200 if readiness.ready else 503, readiness.body())

    head = get


class LivenessHandler(ObservedHandler):
    kind = "health"

    def get(self) -> None:
        self.set_header("Cache-Control", "no-cache")
        if self.request.method != "HEAD":
            self.write("WORKING")

    head = get

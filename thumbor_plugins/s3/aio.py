"""The server's async S3 client (aiobotocore).

One :class:`AsyncS3` per settings per process, created lazily on first use and reused, so every
request shares one connection pool. Every call is bounded: botocore's connect/read timeouts and
bounded retries, plus an overall deadline so that no request hangs on a stalled S3.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ._shared import (
    DELETE_BATCH,
    aio_session,
    delete_errors,
    delete_request,
    list_kwargs,
    raise_for_delete_errors,
    read_page,
    translate,
)
from .fetch import SignedRequests, Stream
from .settings import S3Settings
from .types import ObjectData, ObjectInfo

T = TypeVar("T")


class AsyncS3:
    """Async S3 operations with typed results. Errors are raised as :class:`S3Error` subclasses."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._client_cm: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._fetch: SignedRequests | None = None
        #: bytes received from S3 bodies by this process (loader and result storage)
        self.bytes_read = 0

    @property
    def deadline(self) -> float:
        """Overall seconds for one call: every attempt may use both timeouts, plus backoff."""
        per_attempt = self.settings.connect_timeout + self.settings.read_timeout
        return per_attempt * max(1, self.settings.max_attempts) + 1.0

    async def _get_client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        if self._lock is None or self._loop is not loop:
            self._lock = asyncio.Lock()
            self._client = None
            self._loop = loop
        async with self._lock:
            if self._client is None:
                self._client_cm = aio_session(self.settings).create_client("s3", **self.settings.client_kwargs())
                self._client = await self._client_cm.__aenter__()
        return self._client

    async def close(self) -> None:
        if self._fetch is not None:
            fetch, self._fetch = self._fetch, None
            await fetch.close()
        if self._client_cm is not None:
            cm, self._client_cm, self._client = self._client_cm, None, None
            await cm.__aexit__(None, None, None)

    async def _call(self, coro_factory: Callable[[], Awaitable[T]]) -> T:
        try:
            return await asyncio.wait_for(coro_factory(), timeout=self.deadline)
        except Exception as error:  # noqa: BLE001 - translated into our hierarchy
            raise translate(error) from error

    async def _signed(self) -> SignedRequests:
        if self._fetch is None or self._loop is not asyncio.get_running_loop():
            await self._get_client()  # binds this instance to the running loop
            self._fetch = SignedRequests(self.settings)
        return self._fetch

    async def get(self, bucket: str, key: str, *, max_bytes: int | None = None) -> ObjectData:
        """The whole object. With ``max_bytes``, an object larger than the cap raises
        :class:`TooLarge` having read at most ``max_bytes`` bytes of it (none when S3 announces
        the size, which it always does for a plain GET). Sent by :mod:`.fetch` (the hot path of
        every hit and miss), not by botocore's client."""
        fetch = await self._signed()

        async def run() -> ObjectData:
            data, received = await fetch(bucket, key, max_bytes=max_bytes)
            self.bytes_read += received
            return data

        return await self._call(run)

    @contextlib.asynccontextmanager
    async def open(self, bucket: str, key: str, *, max_bytes: int | None = None,
                   if_none_match: str | None = None) -> AsyncIterator[Stream]:
        """The object's headers at once, its body as the caller reads it (:class:`.fetch.Stream`):
        a large original can be judged by its first bytes, streamed to a file, or left unread.
        With ``if_none_match`` (an ETag) an unchanged object comes without its body
        (``stream.not_modified``). Opening is bounded like :meth:`get`; reading the body by the
        read timeout per chunk."""
        fetch = await self._signed()
        stream = await self._call(
            lambda: fetch.respond(bucket, key, max_bytes=max_bytes, if_none_match=if_none_match))
        try:
            yield stream
        finally:
            stream.close()
            self.bytes_read += stream.received

    async def put(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        cache_control: str | None = None,
    ) -> None:
        """Store an object (private: no ACL is ever set)."""
        signed = await self._signed()
        await self._call(lambda: signed.put(bucket, key, body, content_type=content_type, metadata=metadata,
                                            cache_control=cache_control))

    async def head(self, bucket: str, key: str) -> ObjectInfo:
        signed = await self._signed()
        return await self._call(lambda: signed.head(bucket, key))

    async def list(self, bucket: str, prefix: str = "", *, delimiter: str | None = None) -> AsyncIterator[ObjectInfo]:
        """Every object under ``prefix`` (paginated listing); with ``delimiter``, only those with no
        delimiter after the prefix (the direct children of a "folder")."""
        token: str | None = None
        while True:

            async def page(token: str | None = token) -> Any:
                client = await self._get_client()
                return await client.list_objects_v2(**list_kwargs(bucket, prefix, delimiter, token))

            objects, token = read_page(bucket, await self._call(page))
            for info in objects:
                yield info
            if token is None:
                return

    async def delete(self, bucket: str, keys: Sequence[str]) -> None:
        """Delete keys (batches of 1000, S3's limit). When S3 refuses some keys (DeleteObjects
        answers 200 and lists them) the other batches are still sent, then
        :class:`~.errors.DeleteFailed` (an :class:`Unavailable`) names every refused key."""
        failed: dict[str, str] = {}
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]

            async def run(batch: Sequence[str] = batch) -> dict[str, str]:
                client = await self._get_client()
                return delete_errors(await client.delete_objects(Bucket=bucket, Delete=delete_request(batch)))

            failed.update(await self._call(run))
        raise_for_delete_errors(failed, len(keys))

    async def bucket_reachable(self, bucket: str) -> None:
        """Raises unless ``bucket`` exists and the credentials may use it (readiness)."""

        async def run() -> None:
            client = await self._get_client()
            await client.head_bucket(Bucket=bucket)

        await self._call(run)


_instances: dict[S3Settings, AsyncS3] = {}


def shared(settings: S3Settings) -> AsyncS3:
    """The process-wide client for these settings (one connection pool per process)."""
    instance = _instances.get(settings)
    if instance is None:
        if not _instances:
            atexit.register(close_shared_at_exit)
        instance = _instances[settings] = AsyncS3(settings)
    return instance


_by_config: dict[int, tuple[Any, AsyncS3]] = {}


def for_config(config: Any) -> AsyncS3:
    """The shared client for a Thumbor config (its settings are read once per config object:
    Thumbor makes a result storage per request, and reading eight settings costs more than a hit's
    signing)."""
    known = _by_config.get(id(config))
    if known is not None and known[0] is config:
        return known[1]
    instance = shared(S3Settings.from_config(config))
    _by_config[id(config)] = (config, instance)
    return instance


def close_shared_at_exit() -> None:
    """At interpreter exit, close every shared client on the loop it was made on, if that loop
    still exists and is idle (Thumbor stops its IOLoop on SIGTERM; it does not close it), so that
    connections end cleanly instead of being reaped by the garbage collector."""
    for instance in list(_instances.values()):
        loop = instance._loop
        if instance._client_cm is None or loop is None or loop.is_closed() or loop.is_running():
            continue
        try:
            loop.run_until_complete(asyncio.wait_for(instance.close(), timeout=2.0))
        except Exception:  # noqa: BLE001, S110 - best effort at exit
            pass

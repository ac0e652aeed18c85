"""The server's async S3 client (aiobotocore).

One :class:`AsyncS3` per settings per process, created lazily on first use and reused, so every
request shares one connection pool. Every call is bounded: botocore's connect/read timeouts and
bounded retries, plus an overall deadline so that no request hangs on a stalled S3.
"""

from __future__ import annotations

import asyncio
import atexit
from collections.abc import AsyncIterator
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError as BotoConnectionError,
    ConnectTimeoutError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from .errors import AccessDenied, NoCredentials, NotFound, S3Error, Unavailable
from .fetch import SignedGet
from .settings import S3Settings
from .types import ObjectData, ObjectInfo

_NOT_FOUND_CODES = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
_DENIED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}


def _translate(error: Exception) -> S3Error:
    if isinstance(error, S3Error):
        return error
    if isinstance(error, (asyncio.TimeoutError, ConnectTimeoutError, ReadTimeoutError)):
        return Unavailable(f"S3 timed out: {error}", timeout=True)
    if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
        return NoCredentials("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        translated: S3Error
        if code in _NOT_FOUND_CODES:
            translated = NotFound(code)
        elif code in _DENIED_CODES:
            translated = AccessDenied(code)
        else:
            translated = Unavailable(f"S3 error {code}: {error}")
        translated.code = code
        return translated
    if isinstance(error, (BotoConnectionError, BotoCoreError, OSError)):
        return Unavailable(f"S3 unreachable: {error}")
    return Unavailable(f"S3 failed: {error!r}")


class AsyncS3:
    """Async S3 operations with typed results. Errors are raised as :class:`S3Error` subclasses."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._client_cm: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._fetch: SignedGet | None = None
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
                from aiobotocore.session import get_session

                self._client_cm = get_session().create_client("s3", **self.settings.client_kwargs())
                self._client = await self._client_cm.__aenter__()
        return self._client

    async def close(self) -> None:
        if self._fetch is not None:
            fetch, self._fetch = self._fetch, None
            await fetch.close()
        if self._client_cm is not None:
            cm, self._client_cm, self._client = self._client_cm, None, None
            await cm.__aexit__(None, None, None)

    async def _call(self, coro_factory: Any) -> Any:
        try:
            return await asyncio.wait_for(coro_factory(), timeout=self.deadline)
        except Exception as error:  # noqa: BLE001 - translated into our hierarchy
            raise _translate(error) from error

    async def get(self, bucket: str, key: str, *, max_bytes: int | None = None) -> ObjectData:
        """The whole object. With ``max_bytes``, an object larger than the cap raises
        :class:`TooLarge` having read at most ``max_bytes`` bytes of it (none when S3 announces
        the size, which it always does for a plain GET). Sent by :mod:`.fetch` (the hot path of
        every hit and miss), not by botocore's client."""
        if self._fetch is None or self._loop is not asyncio.get_running_loop():
            await self._get_client()  # binds this instance to the running loop
            self._fetch = SignedGet(self.settings)

        async def run() -> ObjectData:
            data, received = await self._fetch(bucket, key, max_bytes=max_bytes)
            self.bytes_read += received
            return data

        return await self._call(run)

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

        async def run() -> None:
            client = await self._get_client()
            extra: dict[str, Any] = {}
            if content_type:
                extra["ContentType"] = content_type
            if metadata:
                extra["Metadata"] = metadata
            if cache_control:
                extra["CacheControl"] = cache_control
            await client.put_object(Bucket=bucket, Key=key, Body=body, **extra)

        await self._call(run)

    async def head(self, bucket: str, key: str) -> ObjectInfo:
        async def run() -> ObjectInfo:
            client = await self._get_client()
            response = await client.head_object(Bucket=bucket, Key=key)
            return ObjectInfo(
                bucket=bucket,
                key=key,
                size=int(response.get("ContentLength", 0)),
                etag=str(response.get("ETag", "")).strip('"'),
                last_modified=response.get("LastModified"),
            )

        return await self._call(run)

    async def list(self, bucket: str, prefix: str = "", *, delimiter: str | None = None) -> AsyncIterator[ObjectInfo]:
        """Every object under ``prefix`` (paginated listing); with ``delimiter``, only those with no
        delimiter after the prefix (the direct children of a "folder")."""
        token: str | None = None
        while True:

            async def page(token: str | None = token) -> Any:
                client = await self._get_client()
                kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
                if delimiter:
                    kwargs["Delimiter"] = delimiter
                if token:
                    kwargs["ContinuationToken"] = token
                return await client.list_objects_v2(**kwargs)

            response = await self._call(page)
            for item in response.get("Contents", []) or []:
                yield ObjectInfo(
                    bucket=bucket,
                    key=item["Key"],
                    size=int(item.get("Size", 0)),
                    etag=str(item.get("ETag", "")).strip('"'),
                    last_modified=item.get("LastModified"),
                )
            if not response.get("IsTruncated"):
                return
            token = response.get("NextContinuationToken")

    async def delete(self, bucket: str, keys: list[str]) -> None:
        """Delete keys (batches of 1000, S3's limit). A key S3 refused to delete raises
        :class:`Unavailable` (DeleteObjects answers 200 and lists them)."""
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]

            async def run(batch: list[str] = batch) -> None:
                client = await self._get_client()
                response = await client.delete_objects(
                    Bucket=bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
                errors = response.get("Errors") or []
                if errors:
                    first = errors[0]
                    raise Unavailable(f"S3 refused to delete {len(errors)} of {len(batch)} objects, "
                                      f"e.g. {first.get('Key')!r}: {first.get('Code')}")

            await self._call(run)

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

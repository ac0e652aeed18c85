"""GET, HEAD and PUT of one object over a plain pooled HTTP connection, signed with botocore's
SigV4 signer: every request a render or a hit makes to S3.

Why not ``client.get_object`` and friends: on a result-storage hit the GET is the whole job, and a
miss makes four requests; botocore's generic machinery (event hooks, request serialisation,
response parsing) costs several times the CPU of the same signed request sent with aiohttp
(docs/decisions.md). Signing stays botocore's (``S3SigV4Auth``), credentials come from the same
chain as the client's (explicit keys, else the standard AWS chain, session tokens and refreshes
included), and statuses map to the same :mod:`.errors` hierarchy.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import urllib.parse
from typing import IO, Any

import aiohttp
import yarl
from botocore.auth import S3SigV4Auth  # type: ignore[import-untyped, unused-ignore]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped, unused-ignore]

from ._shared import NO_CREDENTIALS, aio_session, answered
from .errors import NoCredentials, S3Error, TooLarge, Unavailable
from .settings import S3Settings
from .types import ObjectData, ObjectInfo

_CHUNK = 256 * 1024
#: retried once more (within max_attempts): S3 said "try again", or a pooled connection was stale
_RETRY_STATUSES = {500, 502, 503, 504}
_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")
_META = "x-amz-meta-"


class SignedRequests:
    """One per :class:`~.aio.AsyncS3`, bound to the event loop it was first used on."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.region = settings.region or "us-east-1"
        endpoint = settings.endpoint_url or f"https://s3.{self.region}.amazonaws.com"
        self.endpoint = endpoint.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._credentials: Any = None

    async def _ready(self) -> tuple[aiohttp.ClientSession, Any]:
        if self._credentials is None:
            from aiobotocore.credentials import AioCredentials  # type: ignore[import-untyped, unused-ignore]

            if self.settings.access_key and self.settings.secret_key:
                self._credentials = AioCredentials(self.settings.access_key, self.settings.secret_key)
            else:
                self._credentials = await aio_session(self.settings).get_credentials()
            if self._credentials is None:
                raise NoCredentials(NO_CREDENTIALS)
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.settings.max_pool_connections),
                timeout=aiohttp.ClientTimeout(
                    sock_connect=self.settings.connect_timeout, sock_read=self.settings.read_timeout
                ),
                auto_decompress=False,
            )
        return self._session, self._credentials

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def url(self, bucket: str, key: str) -> str:
        """Path-style, the key percent-encoded as botocore does (UTF-8, ``/`` and ``~`` kept)."""
        return f"{self.endpoint}/{bucket}/{urllib.parse.quote(key, safe='/~')}"

    async def __call__(self, bucket: str, key: str, *, max_bytes: int | None = None) -> tuple[ObjectData, int]:
        """The object and the number of body bytes received. Raises :class:`S3Error` subclasses."""
        stream = await self.respond(bucket, key, max_bytes=max_bytes)
        try:
            return stream.data(await stream.read()), stream.received
        finally:
            stream.close()

    async def respond(self, bucket: str, key: str, *, max_bytes: int | None = None,
                      if_none_match: str | None = None) -> Stream:
        """The object's response, its body not read yet: a :class:`Stream` (close it). With
        ``if_none_match`` (an ETag), an object that still has it is answered without its body
        (``Stream.not_modified``). An error once the body flows is not retried (the caller has
        seen part of it)."""
        headers = {"If-None-Match": f'"{if_none_match}"'} if if_none_match else {}
        response = await self._send("GET", bucket, key, headers)
        return await Stream.start(response, max_bytes, not_modified_ok=bool(if_none_match))

    async def head(self, bucket: str, key: str) -> ObjectInfo:
        """The object's size, ETag and date. Raises :class:`S3Error` subclasses."""
        response = await self._send("HEAD", bucket, key, {})
        try:
            if response.status != 200:
                raise await _status_error(response)
            modified = response.headers.get("Last-Modified")
            return ObjectInfo(
                bucket=bucket, key=key, size=response.content_length or 0,
                etag=response.headers.get("ETag", "").strip('"'),
                last_modified=email.utils.parsedate_to_datetime(modified) if modified else None,
            )
        finally:
            response.release()

    async def put(self, bucket: str, key: str, body: bytes, *, content_type: str | None = None,
                  metadata: dict[str, str] | None = None, cache_control: str | None = None) -> None:
        """Store an object (private: no ACL is ever set). Raises :class:`S3Error` subclasses."""
        headers = {f"{_META}{name.lower()}": value for name, value in (metadata or {}).items()}
        if content_type:
            headers["Content-Type"] = content_type
        if cache_control:
            headers["Cache-Control"] = cache_control
        response = await self._send("PUT", bucket, key, headers, body)
        try:
            if response.status != 200:
                raise await _status_error(response)
        finally:
            response.release()

    async def _send(self, method: str, bucket: str, key: str, headers: dict[str, str],
                    body: bytes | None = None) -> aiohttp.ClientResponse:
        """The signed request's response (release it). A stale pooled connection, a connection
        that timed out before the request was sent and a "try again" status are retried within
        ``max_attempts``."""
        session, credentials = await self._ready()
        url = self.url(bucket, key)
        attempts = max(1, self.settings.max_attempts)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            frozen = await credentials.get_frozen_credentials()
            signed = AWSRequest(method=method, url=url, headers=dict(headers), data=body or b"")
            # the payload is signed with its SHA-256 (no Content-MD5 is sent, so botocore signs it)
            S3SigV4Auth(frozen, "s3", self.region).add_auth(signed)
            try:
                response = await session.request(method, yarl.URL(url, encoded=True),
                                                 headers=dict(signed.headers.items()), data=body)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as error:
                if last:
                    raise Unavailable(f"S3 unreachable: {error}") from error
            except aiohttp.ConnectionTimeoutError as error:  # nothing was sent: safe to send again
                if last:
                    raise Unavailable(f"S3 timed out: {error}", timeout=True) from error
            except aiohttp.ServerTimeoutError as error:
                raise Unavailable(f"S3 timed out: {error}", timeout=True) from error
            except aiohttp.ClientError as error:
                raise Unavailable(f"S3 failed: {error!r}") from error
            else:
                if response.status not in _RETRY_STATUSES or last:
                    return response
                response.release()
            await asyncio.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover - the last attempt returns or raises


class Stream:
    """An object being received: its headers at once, its body on demand (:meth:`peek`, then
    :meth:`read` or :meth:`read_into`), never more than ``max_bytes`` of it (:class:`TooLarge`).
    :meth:`close` releases the connection: back to the pool when the body was read to its end,
    dropped otherwise (the rest of a large object is never downloaded)."""

    #: S3 answered 304 to ``If-None-Match``: the object still has that ETag, and there is no body
    not_modified = False

    def __init__(self, response: aiohttp.ClientResponse, max_bytes: int | None) -> None:
        self._response = response
        self._max_bytes = max_bytes
        self._head = bytearray()
        self.received = 0
        headers = response.headers
        modified = headers.get("Last-Modified")
        self.length = response.content_length
        self.etag = headers.get("ETag", "").strip('"')
        self.content_type = headers.get("Content-Type")
        self.last_modified = email.utils.parsedate_to_datetime(modified) if modified else None
        self.metadata = {
            name[len(_META):].lower(): value for name, value in headers.items() if name.lower().startswith(_META)
        }

    @classmethod
    async def start(cls, response: aiohttp.ClientResponse, max_bytes: int | None, *,
                    not_modified_ok: bool = False) -> Stream:
        """The stream of a 200 response (or of a 304 when ``not_modified_ok``); any other status
        raises its :class:`S3Error`."""
        if response.status == 304 and not_modified_ok:
            stream = cls(response, max_bytes)
            stream.not_modified = True
            return stream
        try:
            if response.status != 200:
                raise await _status_error(response)
            if max_bytes is not None and response.content_length is not None and response.content_length > max_bytes:
                raise TooLarge(response.content_length, max_bytes)
        except BaseException:
            response.release()
            raise
        return cls(response, max_bytes)

    async def _chunk(self) -> bytes:
        try:
            chunk = await self._response.content.read(_CHUNK)
        except aiohttp.ServerTimeoutError as error:
            raise Unavailable(f"S3 timed out: {error}", timeout=True) from error
        except (aiohttp.ClientError, TimeoutError) as error:
            raise Unavailable(f"S3 failed: {error!r}") from error
        self.received += len(chunk)
        if self._max_bytes is not None and self.received > self._max_bytes:
            raise TooLarge(None, self._max_bytes)
        return chunk

    async def peek(self, size: int) -> bytes:
        """The first ``size`` bytes of the body (fewer when it is shorter); still part of what
        :meth:`read` returns."""
        while len(self._head) < size and (chunk := await self._chunk()):
            self._head += chunk
        return bytes(self._head[:size])

    async def read(self) -> bytes:
        """The whole body (from its start, peeked bytes included)."""
        chunks = [bytes(self._head)]
        while chunk := await self._chunk():
            chunks.append(chunk)
        self._head.clear()
        return b"".join(chunks)

    async def read_into(self, file: IO[bytes]) -> None:
        """Write the whole body (from its start) to ``file``, chunk by chunk."""
        file.write(self._head)
        self._head.clear()
        while chunk := await self._chunk():
            file.write(chunk)

    def data(self, body: bytes) -> ObjectData:
        return ObjectData(body=body, etag=self.etag, content_type=self.content_type,
                          last_modified=self.last_modified, metadata=self.metadata)

    def close(self) -> None:
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


async def _status_error(response: aiohttp.ClientResponse) -> S3Error:
    body = await response.content.read(64 * 1024)
    match = _CODE.search(body)
    code = match.group(1).decode(errors="replace") if match else str(response.status)
    return answered(code, response.status, f"S3 error {code} (HTTP {response.status})")

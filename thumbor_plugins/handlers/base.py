"""The base of our handlers: reports each request to :mod:`thumbor_plugins.observe`."""

from __future__ import annotations

import hmac
import json
from typing import Any

from tornado.web import RequestHandler

from .. import observe
from ..settings import Settings, settings_of


def bearer_matches(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header value carries ``token``, compared in constant time.

    ``Bearer <token>`` (scheme case-insensitive) for a one-word token; a token that is itself a
    ``Scheme credentials`` value is compared as-is (MinIO sends its webhook auth token verbatim).
    """
    header, token = (header or "").strip(), token.strip()
    if " " in token:
        return hmac.compare_digest(header.encode(), token.encode())
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


class ObservedHandler(RequestHandler):
    """A tornado handler that reports its requests (``kind``; ``rejection`` when it refused one).
    Thumbor's context is passed as the ``context`` route argument; its settings are
    ``service_settings`` (``settings`` is tornado's)."""

    kind = "other"
    rejection: str | None = None
    _bytes_sent = 0
    service_settings: Settings

    def initialize(self, context: Any) -> None:  # noqa: D401 - tornado hook
        self.context = context
        self.service_settings = settings_of(context)

    def write(self, chunk: Any) -> None:
        if isinstance(chunk, str):
            chunk = chunk.encode()
        if isinstance(chunk, (bytes, bytearray, memoryview)):
            self._bytes_sent += len(chunk)
        super().write(chunk)

    def write_json(self, status: int, body: dict[str, Any]) -> None:
        """A small JSON answer that no cache keeps (HEAD: the same headers, no body)."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        if self.request.method != "HEAD":
            self.write(json.dumps(body, separators=(",", ":")) + "\n")

    def finish(self, chunk: Any = None) -> Any:
        self.clear_header("Server")  # no software version to anyone who asks
        return super().finish(chunk)

    def on_finish(self) -> None:
        observe.request_finished(
            kind=self.kind,
            method=self.request.method or "",
            status=self.get_status(),
            seconds=self.request.request_time(),
            reason=self.rejection,
            bytes_sent=self._bytes_sent,
            path=self.request.path,
            client=self.request.remote_ip,
        )

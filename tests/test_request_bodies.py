"""Request bodies cost nothing before authentication (issue 12): Tornado buffers up to 100 MB of
body before any handler runs, so an unauthenticated client could make every worker hold 100 MB
per connection. Each test announces a large body and sends none (or a little) of it: the answer
must come from the headers alone."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import httpx

from .conftest import BUCKET, EVENTS_TOKEN, sign

HUNDRED_MB = 100 * 1024 * 1024


def raw_request(base: str, head: str, body: bytes = b"", timeout: float = 5.0) -> tuple[int, float]:
    """Send ``head`` (request line + headers) and ``body``; the status and seconds to the answer."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        started = time.monotonic()
        sock.sendall(head.encode() + b"\r\n" + body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1]), time.monotonic() - started


def event_head(base: str, token: str, length: int | None, chunked: bool = False) -> str:
    host = urlsplit(base).netloc
    lines = ["POST /events/minio HTTP/1.1", f"Host: {host}", f"Authorization: Bearer {token}",
             "Content-Type: application/json"]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}")
    return "\r\n".join(lines) + "\r\n"


def test_should_refuse_an_unauthenticated_event_before_reading_its_body(thumbor) -> None:
    status, seconds = raw_request(thumbor.url, event_head(thumbor.url, "wrong-token", HUNDRED_MB))
    assert status == 401
    assert seconds < 2  # not waiting for 100 MB that never come


def test_should_refuse_an_oversized_event_body_from_its_length(thumbor) -> None:
    status, _ = raw_request(thumbor.url, event_head(thumbor.url, EVENTS_TOKEN, HUNDRED_MB))
    assert status == 413


def test_should_refuse_a_chunked_event_body_once_it_passes_the_limit(thumbor_factory) -> None:
    thumbor = thumbor_factory(IMGSTACK_EVENTS_MAX_BODY_BYTES="1000")
    chunk = b"x" * 600
    body = b"".join(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(3))  # no last chunk
    status, _ = raw_request(thumbor.url, event_head(thumbor.url, EVENTS_TOKEN, None, chunked=True), body)
    assert status in (400, 413)  # refused mid-body by tornado; the connection is closed


def test_should_still_accept_an_event_under_the_limit(thumbor) -> None:
    response = httpx.post(thumbor.url + "/events/minio", content=b'{"Records": []}',
                          headers={"Authorization": f"Bearer {EVENTS_TOKEN}"})
    assert response.status_code == 200, response.text


def test_should_answer_400_to_deeply_nested_event_json(thumbor) -> None:
    response = httpx.post(thumbor.url + "/events/minio", content=b"[" * 200_000,
                          headers={"Authorization": f"Bearer {EVENTS_TOKEN}"})
    assert response.status_code == 400, response.text


def test_should_refuse_a_body_on_an_image_route_from_its_headers(thumbor) -> None:
    url = sign(f"{BUCKET}/any.jpg", base=thumbor.url, width=10, height=10)
    parts = urlsplit(url)
    head = f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {HUNDRED_MB}\r\n"
    status, seconds = raw_request(thumbor.url, head)
    assert status == 400
    assert seconds < 2

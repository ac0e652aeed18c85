"""S3 misbehaving under a real Thumbor: slow (504 at the configured timeout, no pile-up), answering
500s (502, bounded retries), refusing result writes (the image is still served)."""

from __future__ import annotations

import http.server
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pytest

from .conftest import BUCKET, sign
from .tcp_counter import CountingProxy
from .test_serving import PLAIN, upload


@pytest.fixture
def slow_s3(s3_server, thumbor_factory):  # noqa: ANN001, ANN201
    proxy = CountingProxy("127.0.0.1", int(urlsplit(s3_server.endpoint_url).port))
    try:
        thumbor = thumbor_factory(IMGSTACK_S3_ENDPOINT_URL=proxy.url, IMGSTACK_S3_READ_TIMEOUT="1",
                                  IMGSTACK_S3_CONNECT_TIMEOUT="1", IMGSTACK_S3_MAX_ATTEMPTS="1",
                                  IMGSTACK_PROCESSES="1")
        yield thumbor, proxy
    finally:
        proxy.close()


def test_slow_s3_is_504_at_the_read_timeout_without_pile_up(s3, slow_s3, uid) -> None:
    thumbor, proxy = slow_s3
    upload(s3, f"{uid}/a.jpg")
    urls = [sign(f"{BUCKET}/{uid}/a.jpg", base=thumbor.url, width=40 + i, height=30) for i in range(8)]
    proxy.delay = 6.0
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda url: httpx.get(url, headers=PLAIN, timeout=30).status_code, urls))
        elapsed = time.monotonic() - started
        health = httpx.get(thumbor.url + "/healthcheck", timeout=5)
    finally:
        proxy.delay = 0.0
    assert statuses == [504] * 8
    # one read timeout (1 s) plus the deadline's slack, not 8 x 6 s of piled-up waits
    assert elapsed < 5.0, elapsed
    assert health.status_code == 200
    # and S3 back to normal: served again, nothing left stuck
    assert httpx.get(urls[0], headers=PLAIN, timeout=30).status_code == 200


class _Failing(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint that answers every request with S3's InternalError."""

    requests = 0

    def _fail(self) -> None:
        type(self).requests += 1
        body = b"<?xml version='1.0'?><Error><Code>InternalError</Code><Message>boom</Message></Error>"
        self.send_response(500)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _fail

    def log_message(self, *args: object) -> None:
        pass


def test_s3_answering_500s_is_502_after_bounded_retries(thumbor_factory) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        thumbor = thumbor_factory(IMGSTACK_S3_ENDPOINT_URL=f"http://127.0.0.1:{server.server_port}",
                                  IMGSTACK_S3_MAX_ATTEMPTS="2", IMGSTACK_PROCESSES="1")
        _Failing.requests = 0
        started = time.monotonic()
        response = httpx.get(sign(f"{BUCKET}/any.jpg", base=thumbor.url, width=40, height=30), headers=PLAIN,
                             timeout=30)
        assert response.status_code == 502
        assert response.text == "502 storage unavailable\n"
        assert time.monotonic() - started < 5
        # the result-storage lookup and the original's GET, each tried twice (max attempts), no more
        assert _Failing.requests <= 4
    finally:
        server.shutdown()
        server.server_close()


def test_a_result_storage_write_that_fails_still_serves_the_image(s3, thumbor_factory, uid) -> None:
    thumbor = thumbor_factory(IMGSTACK_DERIVED_BUCKET="no-such-derived-bucket", IMGSTACK_PROCESSES="1")
    upload(s3, f"{uid}/a.jpg")
    url = sign(f"{BUCKET}/{uid}/a.jpg", base=thumbor.url, width=60, height=40)
    for _ in range(2):  # the lookup fails (a miss), the write fails (logged): rendered each time
        response = httpx.get(url, headers=PLAIN, timeout=30)
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"

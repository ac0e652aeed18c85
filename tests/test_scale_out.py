"""The scale-out path for real, without Docker: two Thumbor replicas (the shipped config) behind
nginx running the compose's own ``compose/nginx/cache.conf``, against the embedded S3 server.

Only what cannot exist outside compose is changed in the conf: the replicas' addresses (two
``server`` lines for the one ``thumbor`` name Docker resolves to every replica), DNS, ports and
paths. Needs Debian's nginx (``.ci/run`` installs it); skipped with a reason without it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from thumbor_plugins import embedded

from . import local_nginx
from .conftest import BUCKET, DERIVED, EVENTS_TOKEN, sign, thumbor_env
from .test_events import minio_event
from .test_ops import scrape, value
from .test_serving import upload


class Replica:
    """One Thumbor replica on a fixed port, which can be killed and started again on it."""

    def __init__(self, s3_server, logs: Path, name: str) -> None:  # noqa: ANN001
        self.env = thumbor_env(s3_server, IMGSTACK_PROCESSES="1")
        self.port = embedded.free_port()
        self.log = logs / f"{name}.log"
        self.thumbor = self.start()

    def start(self) -> embedded.Thumbor:
        self.thumbor = embedded.start_thumbor(self.env, self.log, port=self.port)
        return self.thumbor

    @property
    def url(self) -> str:
        return self.thumbor.url

    def kill(self) -> None:
        """SIGKILL to the whole replica (supervisor and worker), as when a container dies."""
        os.killpg(self.thumbor.process.popen.pid, signal.SIGKILL)
        self.thumbor.process.popen.wait(timeout=10)
        self.thumbor.process.stop()

    def requests(self) -> float:
        samples = scrape(self.url)
        return sum(value(samples, "imgstack_requests_total", kind="image", status=s) for s in ("200", "404", "503"))


@pytest.fixture(scope="module")
def cluster(s3_server, tmp_path_factory):  # noqa: ANN001, ANN201
    if local_nginx.NGINX is None:
        pytest.skip("no nginx binary on this machine (.ci/run installs Debian's nginx-light)")
    tmp = tmp_path_factory.mktemp("scale-out")
    replicas = [Replica(s3_server, tmp, "a"), Replica(s3_server, tmp, "b")]
    public, internal = embedded.free_port(), embedded.free_port()
    nginx = local_nginx.start(tmp, [f"127.0.0.1:{r.port}" for r in replicas], {8080: public, 8081: internal})
    base = f"http://127.0.0.1:{public}"
    try:
        for _ in range(100):
            try:
                if httpx.get(base + "/nginx-health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                if nginx.poll() is not None:
                    pytest.fail(f"nginx exited: {nginx.stderr.read().decode()}")
            time.sleep(0.1)
        yield {"base": base, "internal": f"http://127.0.0.1:{internal}", "replicas": replicas}
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        nginx.stderr.close()
        for replica in replicas:
            replica.thumbor.stop()


def links(base: str, key: str, count: int, start: int = 0) -> list[str]:
    # expiring links: private, never stored by the cache, so every request reaches a replica
    return [sign(f"{BUCKET}/{key}", base=base, width=40 + start + i, height=30, expires_in=600) for i in range(count)]


def test_requests_spread_over_the_replicas_and_each_reports_its_own(s3, cluster, uid) -> None:
    upload(s3, f"{uid}/a.jpg")
    before = [replica.requests() for replica in cluster["replicas"]]
    with ThreadPoolExecutor(4) as pool:
        urls = links(cluster["base"], f"{uid}/a.jpg", 40)
        statuses = list(pool.map(lambda url: httpx.get(url, timeout=60).status_code, urls))
    assert statuses == [200] * 40
    served = [replica.requests() - earlier for replica, earlier in zip(cluster["replicas"], before, strict=True)]
    assert sum(served) >= 40 and min(served) >= 5, served  # each replica took its share


def test_a_replica_killed_mid_load_fails_no_get_and_takes_traffic_again_once_restarted(s3, cluster, uid) -> None:
    upload(s3, f"{uid}/b.jpg")
    doomed = cluster["replicas"][1]
    urls = links(cluster["base"], f"{uid}/b.jpg", 400)
    results: list[int | str] = []
    stop = threading.Event()

    def load(offset: int) -> None:
        for url in urls[offset::4]:
            if stop.is_set():
                return
            try:
                results.append(httpx.get(url, timeout=60).status_code)
            except httpx.HTTPError as error:
                results.append(type(error).__name__)

    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(load, offset) for offset in range(4)]
        time.sleep(1.0)
        doomed.kill()
        time.sleep(2.0)
        stop.set()
        for future in running:
            future.result()
    # idempotent GETs in flight on the dead replica were retried on the other by nginx
    assert results and set(results) == {200}, {r: results.count(r) for r in set(results)}

    doomed.start()
    before = doomed.requests()
    deadline = time.monotonic() + 30  # nginx tries it again after fail_timeout (10 s)
    while doomed.requests() == before and time.monotonic() < deadline:
        for url in links(cluster["base"], f"{uid}/b.jpg", 8, start=500):
            assert httpx.get(url, timeout=60).status_code == 200
        time.sleep(1)
    assert doomed.requests() > before, "the restarted replica never got traffic again"


def test_an_event_through_the_balancer_purges_what_another_replica_rendered(s3, cluster, uid) -> None:
    key = f"{uid}/c.jpg"
    upload(s3, key)
    rendered_by = cluster["replicas"][0]
    assert httpx.get(sign(f"{BUCKET}/{key}", base=rendered_by.url, width=50, height=40), timeout=60).status_code == 200
    for _ in range(50):
        if s3.list_objects_v2(Bucket=DERIVED, Prefix=f"{BUCKET}/{key}/").get("KeyCount", 0):
            break
        time.sleep(0.1)
    s3.delete_object(Bucket=BUCKET, Key=key)
    # several times, so that both replicas answer one: whichever it is purges the shared bucket
    for _ in range(4):
        response = httpx.post(cluster["internal"] + "/events/minio", timeout=60,
                              content=minio_event("console-delete.json", BUCKET, key),
                              headers={"Authorization": f"Bearer {EVENTS_TOKEN}", "Content-Type": "application/json"})
        assert response.status_code == 200, response.text
    assert s3.list_objects_v2(Bucket=DERIVED, Prefix=f"{BUCKET}/{key}/").get("KeyCount", 0) == 0
    # the public side never takes events
    assert httpx.post(cluster["base"] + "/events/minio", content=b"{}").status_code == 404

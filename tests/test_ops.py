"""Operations over HTTP, against real Thumbor processes and a real S3 server: /metrics,
/healthcheck/ready, the JSON access log."""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from thumbor_plugins import embedded

from .conftest import BUCKET, DERIVED, FIXTURES, sign, thumbor_env

JPEG = "800px-Katherine_Maher.jpg"
PLAIN = {"Accept": "image/jpeg"}
METRICS_TOKEN = "test-metrics-token-0123456789"


def scrape(base: str, token: str | None = None) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, by (sample name, sorted labels)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(base + "/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for_derived(s3, key: str, wait: float = 10.0) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if s3.list_objects_v2(Bucket=DERIVED, Prefix=f"{BUCKET}/{key}/").get("KeyCount", 0):
            return
        time.sleep(0.1)
    raise AssertionError(f"no derived object for {key}")


def wait_until_stored(base: str, before: dict, results: int = 1, wait: float = 10.0) -> None:
    """Wait (bounded) until the server has stored ``results`` more results than at ``before`` (a
    scrape) and checked them against their originals. The object appears in the derived bucket
    before that check: a test that changes the original as soon as it sees the object races the
    check, and the server rightly withdraws the result."""
    name = "imgstack_result_storage_writes_total"
    deadline = time.monotonic() + wait
    while True:
        now = scrape(base)
        grew = {outcome: value(now, name, outcome=outcome) - value(before, name, outcome=outcome)
                for outcome in ("stored", "withdrawn", "failed")}
        if grew["stored"] >= results:
            return
        if grew["withdrawn"] or grew["failed"] or time.monotonic() > deadline:
            raise AssertionError(f"results written since the scrape: {grew}, expected {results} stored")
        time.sleep(0.05)


def test_metrics_follow_image_requests_rejections_hits_and_bytes(s3, thumbor, uid) -> None:
    key = f"{uid}/metrics.jpg"
    body = (FIXTURES / JPEG).read_bytes()
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    url = sign(f"{BUCKET}/{key}", base=thumbor.url, width=60, height=40)
    before = scrape(thumbor.url)

    assert httpx.get(url, headers=PLAIN).status_code == 200  # miss: fetched and rendered
    wait_until_stored(thumbor.url, before)
    assert httpx.get(url, headers=PLAIN).status_code == 200  # hit
    tampered = url.replace(url.split("/")[3], "A" * len(url.split("/")[3]))
    assert httpx.get(tampered).status_code == 403

    after = scrape(thumbor.url)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("imgstack_requests_total", kind="image", status="200") == 2
    assert grew("imgstack_requests_total", kind="image", status="403") == 1
    assert grew("imgstack_request_duration_seconds_count", kind="image") == 3
    assert grew("imgstack_requests_total", kind="metrics", status="200") >= 1  # the scrapes (waiting polls too)
    assert grew("imgstack_rejected_requests_total", reason="bad_signature") == 1
    assert grew("imgstack_result_storage_lookups_total", result="miss") == 1
    assert grew("imgstack_result_storage_lookups_total", result="hit") == 1
    assert grew("imgstack_s3_fetch_duration_seconds_count") == 1
    assert grew("imgstack_s3_fetched_bytes_total") == len(body)
    assert grew("imgstack_render_duration_seconds_count") == 1
    assert grew("imgstack_result_storage_writes_total", outcome="stored") == 1
    assert grew("imgstack_result_storage_writes_total", outcome="withdrawn") == 0
    assert ("imgstack_warm_queue_depth", ()) in after


def test_metrics_need_the_bearer_token_when_one_is_set(thumbor_factory) -> None:
    thumbor = thumbor_factory(IMGSTACK_METRICS_TOKEN=METRICS_TOKEN)
    assert httpx.get(thumbor.url + "/metrics").status_code == 401
    wrong = httpx.get(thumbor.url + "/metrics", headers={"Authorization": "Bearer " + METRICS_TOKEN[:-1] + "x"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    assert "imgstack_" not in wrong.text
    samples = scrape(thumbor.url, METRICS_TOKEN)
    assert value(samples, "imgstack_rejected_requests_total", reason="unauthorized") >= 2
    assert value(samples, "imgstack_requests_total", kind="metrics", status="401") >= 2


def test_liveness_is_counted_when_thumbor_healthcheck_list_is_replaced_by_ours(thumbor_factory) -> None:
    thumbor = thumbor_factory(HANDLER_LISTS="thumbor_plugins.handler_lists")
    before = value(scrape(thumbor.url), "imgstack_requests_total", kind="health", status="200")
    response = httpx.get(thumbor.url + "/healthcheck")
    assert response.status_code == 200 and response.text == "WORKING"
    assert httpx.head(thumbor.url + "/healthcheck").status_code == 200
    after = value(scrape(thumbor.url), "imgstack_requests_total", kind="health", status="200")
    assert after - before == 2


def json_lines(log_path) -> list[dict]:
    entries = []
    for text in log_path.read_text(errors="replace").splitlines():
        if text.startswith("{"):
            entries.append(json.loads(text))
    return entries


def wait_for_lines(log_path, predicate, count: int, wait: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + wait
    while True:
        found = [entry for entry in json_lines(log_path) if predicate(entry)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_one_json_access_line_per_request_without_the_signature(s3, thumbor, uid) -> None:
    key = f"{uid}/logged.jpg"
    s3.put_object(Bucket=BUCKET, Key=key, Body=(FIXTURES / JPEG).read_bytes())
    url = sign(f"{BUCKET}/{key}", base=thumbor.url, width=50, height=50, expires_in=600)
    signature = url.split("/")[3]
    ok = httpx.get(url, headers=PLAIN)
    assert ok.status_code == 200
    wait_for_derived(s3, key)
    assert httpx.get(url, headers=PLAIN).status_code == 200
    tampered = url.replace(signature, signature[::-1])
    assert httpx.get(tampered).status_code == 403
    assert httpx.get(thumbor.url + "/healthcheck/ready").status_code == 200

    log_path = thumbor.process.log_path
    mine = wait_for_lines(log_path, lambda e: uid in e["path"], 3)
    assert [(e["status"], e["cache_hit"], e["format"], e["reason"]) for e in mine] == [
        (200, False, "jpeg", None), (200, True, "jpeg", None), (403, None, None, "bad_signature")]
    for entry in mine:
        assert entry["method"] == "GET" and entry["kind"] == "image"
        assert entry["path"].startswith("/<redacted>/50x50/") and entry["path"].endswith("/images/" + key)
        assert isinstance(entry["duration_ms"], float) and entry["duration_ms"] >= 0
        assert entry["time"].endswith("Z")
    assert mine[0]["bytes"] == len(ok.content)
    assert wait_for_lines(log_path, lambda e: e["path"] == "/healthcheck/ready", 1)[-1]["kind"] == "health"
    text = log_path.read_text(errors="replace")
    assert signature not in text and signature[::-1] not in text  # neither ours nor tornado's lines


@pytest.mark.parametrize(("trusted", "expected"), [("", "127.0.0.1"), ("127.0.0.1", "198.51.100.7")])
def test_should_log_a_forged_x_forwarded_for_only_from_a_trusted_proxy(thumbor_factory, trusted, expected) -> None:
    thumbor = thumbor_factory(IMGSTACK_TRUSTED_PROXIES=trusted, IMGSTACK_PROCESSES="1")
    def health(entry: dict) -> bool:
        return entry["path"] == "/healthcheck"

    def forged(entry: dict) -> bool:
        return health(entry) and entry["client"] == "198.51.100.7"

    # the server's start-up probes write /healthcheck lines too, some of them late: tell ours by
    # the address it is logged with
    log_path = thumbor.process.log_path
    earlier = len([entry for entry in json_lines(log_path) if health(entry)])
    assert httpx.get(thumbor.url + "/healthcheck", headers={"X-Forwarded-For": "198.51.100.7"}).status_code == 200
    if expected == "198.51.100.7":
        assert wait_for_lines(log_path, forged, 1), "the trusted proxy's forwarded address was not logged"
    else:
        assert len(wait_for_lines(log_path, health, earlier + 1)) > earlier
        time.sleep(0.5)  # every line of this request written
        assert not [entry for entry in json_lines(log_path) if forged(entry)]


def test_access_log_can_be_turned_off(thumbor_factory) -> None:
    thumbor = thumbor_factory(IMGSTACK_ACCESS_LOG="false")
    assert httpx.get(thumbor.url + "/metrics").status_code == 200
    time.sleep(0.5)
    assert json_lines(thumbor.process.log_path) == []


# --- readiness against an S3 server this test stops and restarts ------------------------------


class OwnStack:
    """An S3 server on a fixed port (restartable with the same data) and a Thumbor using it."""

    def __init__(self, tmp_path) -> None:
        self.data_dir = tmp_path / "s3"
        self.port = embedded.free_port(with_grpc=True)
        self.s3 = embedded.start_s3(self.data_dir, s3_port=self.port)
        embedded.ensure_buckets(self.s3.endpoint_url, self.s3.access_key, self.s3.secret_key, [BUCKET, DERIVED])
        env = thumbor_env(self.s3, IMGSTACK_S3_CONNECT_TIMEOUT="1", IMGSTACK_S3_READ_TIMEOUT="2")
        self.thumbor = embedded.start_thumbor(env, tmp_path / "thumbor.log")

    def restart_s3(self) -> None:
        self.s3 = embedded.start_s3(self.data_dir, s3_port=self.port)

    def stop(self) -> None:
        self.thumbor.stop()
        self.s3.stop()


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory):
    stack = OwnStack(tmp_path_factory.mktemp("own-stack"))
    try:
        yield stack
    finally:
        stack.stop()


def poll_ready(base: str, status: int, wait: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + wait
    while True:
        response = httpx.get(base + "/healthcheck/ready", timeout=30)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.3)


def test_readiness_follows_s3_down_and_back(own_stack) -> None:
    base = own_stack.thumbor.url
    ready = poll_ready(base, 200)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "buckets": {BUCKET: "ok", DERIVED: "ok"}}
    assert ready.headers["cache-control"] == "no-store"

    own_stack.s3.stop()
    started = time.monotonic()
    down = poll_ready(base, 503)
    assert down.status_code == 503
    assert time.monotonic() - started < 15  # bounded: the cache is ~1 s, S3 timeouts are short here
    body = down.json()
    assert body["status"] == "unavailable"
    assert body["buckets"] == {BUCKET: "unreachable", DERIVED: "unreachable"}
    assert "unreachable" in body["reason"]
    assert own_stack.s3.endpoint_url not in down.text  # no internal addresses to anonymous callers
    assert httpx.get(base + "/healthcheck").status_code == 200  # liveness does not depend on S3

    own_stack.restart_s3()
    back = poll_ready(base, 200)
    assert back.status_code == 200, back.text
    samples = scrape(base)
    assert value(samples, "imgstack_requests_total", kind="health", status="503") >= 1


def test_readiness_reports_a_missing_bucket(s3_server, tmp_path) -> None:
    thumbor = embedded.start_thumbor(thumbor_env(s3_server, IMGSTACK_DERIVED_BUCKET="no-such-derived"),
                                     tmp_path / "thumbor.log")
    try:
        response = httpx.get(thumbor.url + "/healthcheck/ready")
        assert response.status_code == 503
        assert response.json()["buckets"] == {BUCKET: "ok", "no-such-derived": "missing"}
        assert response.json()["reason"] == "S3 bucket no-such-derived: missing"
    finally:
        thumbor.stop()


# --- several worker processes --------------------------------------------------------------------


def test_metrics_add_up_across_worker_processes(s3_server, tmp_path) -> None:
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    env = thumbor_env(s3_server, PROMETHEUS_MULTIPROC_DIR=str(multiproc))
    port = embedded.free_port()
    argv = [sys.executable, "-m", "thumbor.server", f"--port={port}", "--ip=127.0.0.1",
            f"--conf={embedded.thumbor_conf()}", "--log-level=warning", "--processes=2"]
    process = embedded.spawn("thumbor", argv, tmp_path / "thumbor.log", env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        embedded.wait_http(base + "/healthcheck", process, 60)
        requests = 40
        # the start-up probe above is a health request too: count from here
        before = value(scrape(base), "imgstack_requests_total", kind="health", status="200")

        def ready(_: int) -> int:
            return httpx.get(base + "/healthcheck/ready", timeout=30).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(ready, range(requests))) == {200}
        # the main process writes files too (zeros, before it forks): count the workers' only
        pids = {int(path.stem.rsplit("_", 1)[-1]) for path in multiproc.glob("counter_*.db")}
        workers = pids - {process.popen.pid}
        samples = scrape(base)
        assert value(samples, "imgstack_requests_total", kind="health", status="200") == before + requests
        # whichever worker answers, the totals are the same
        for _ in range(3):
            again = scrape(base)
            assert value(again, "imgstack_requests_total", kind="health", status="200") == before + requests
        assert len(workers) == 2, f"only {workers} answered: the test did not exercise two workers"
    finally:
        process.stop(grace=5)

"""The events package without servers: MinIO payloads, the job model, the ONE warm list, the queue."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from urllib.parse import quote_plus

import pytest
from thumbor.config import Config

import thumbor_plugins.config  # noqa: F401 - defines our settings
from thumbor_plugins import events, presets, sources
from thumbor_plugins.events import (
    PURGE,
    WARM,
    Job,
    JobQueue,
    Outcome,
    PayloadError,
    QueueFull,
    jobs_for,
    parse_payload,
    warm_requests,
)
from thumbor_plugins.settings import Settings
from thumbor_plugins.urls import parse

MINIO_EVENTS = Path(__file__).resolve().parent / "fixtures" / "minio-events"
KEY = "unit-test-key"


def payload(name: str, *, bucket: str | None = None, key: str | None = None, event: str | None = None) -> bytes:
    document = json.loads((MINIO_EVENTS / name).read_text())
    record = document["Records"][0]
    if bucket is not None:
        record["s3"]["bucket"]["name"] = bucket
    if key is not None:
        record["s3"]["object"]["key"] = quote_plus(key, safe="/")
    if event is not None:
        record["eventName"] = document["EventName"] = event
    document["Key"] = f"{record['s3']['bucket']['name']}/{key or ''}"
    return json.dumps(document).encode()


def config(**values) -> Config:
    return Config(**{"IMGSTACK_ALLOWED_BUCKETS": ("images",), **values})


def test_warm_links_expire_within_the_servers_maximum_lifetime() -> None:
    source = sources.Source("images", "a.jpg")
    [first, *_] = warm_requests("images/a.jpg", source, presets.load(None), key=KEY, expires_in=120, now=1000)
    assert "expires(1120)" in first.url
    # the stored key is the one a permanent link looks up
    [permanent, *_] = warm_requests("images/a.jpg", source, presets.load(None), key=KEY)
    assert first.derived_key == permanent.derived_key and "expires(" not in permanent.url
    assert events.warm_link_lifetime(None) == events.WARM_LINK_SECONDS
    assert events.warm_link_lifetime(0) == events.WARM_LINK_SECONDS
    assert events.warm_link_lifetime(60) == 54  # a margin for clock skew
    assert events.warm_link_lifetime(300) == 270
    assert events.warm_link_lifetime(1) == 1
    assert events.warm_link_lifetime(10**6) == events.WARM_LINK_SECONDS


def test_public_api_is_pinned() -> None:
    assert sorted(events.__all__) == sorted([
        "ACCEPT_CLASSES", "PURGE", "WARM", "Job", "JobQueue", "ObjectEvent", "Outcome", "PayloadError",
        "QueueFull", "WARM_LINK_SECONDS", "WarmRequest", "action_for", "image_of", "job_for", "jobs_for",
        "parse_payload", "warm_link_lifetime",
        "warm_requests",
    ])


# --- payload ------------------------------------------------------------------------------------


def test_real_minio_console_payloads_decode_query_escaped_keys() -> None:
    [put] = parse_payload((MINIO_EVENTS / "console-put.json").read_bytes())
    [delete] = parse_payload((MINIO_EVENTS / "console-delete.json").read_bytes())
    [docs] = parse_payload((MINIO_EVENTS / "docs-put.json").read_bytes())
    assert (put.action, put.bucket, put.key) == (WARM, "vd-main", "Tile_+002_+002.mtl")
    assert (delete.action, delete.bucket, delete.key) == (PURGE, "vd-main", "Tile_+002_+002.mtl")
    assert (docs.action, docs.bucket, docs.key) == (WARM, "images", "myphoto.jpg")


@pytest.mark.parametrize("escaped, key", [
    ("a+b%2Bc.jpg", "a b+c.jpg"),                      # Go QueryEscape: space is +, + is %2B
    ("dir%2Fsub%2Fx.jpg", "dir/sub/x.jpg"),            # ... and / is %2F
    ("%E3%83%97%E3%83%AD+1.png", "プロ 1.png"),
    ("percent%2541.png", "percent%41.png"),            # decoded exactly once
])
def test_keys_are_decoded_exactly_once(escaped: str, key: str) -> None:
    document = json.loads((MINIO_EVENTS / "docs-put.json").read_text())
    document["Records"][0]["s3"]["object"]["key"] = escaped
    [event] = parse_payload(json.dumps(document))
    assert event.key == key


@pytest.mark.parametrize("name, action", [
    ("s3:ObjectCreated:Put", WARM),
    ("s3:ObjectCreated:Post", WARM),
    ("s3:ObjectCreated:Copy", WARM),
    ("s3:ObjectCreated:CompleteMultipartUpload", WARM),
    ("s3:ObjectCreated:PutTagging", None),   # metadata only: the image did not change
    ("s3:ObjectCreated:PutRetention", None),
    ("s3:ObjectRemoved:Delete", PURGE),
    ("s3:ObjectRemoved:DeleteMarkerCreated", PURGE),
    ("s3:ObjectAccessed:Get", None),
    ("s3:Replication:OperationFailedReplication", None),
])
def test_event_names_map_to_actions(name: str, action: str | None) -> None:
    assert events.action_for(name) == action


@pytest.mark.parametrize("body", [
    b"", b"{", b"\xff\xfe", b"[]", b'"Records"', b"{}", b'{"Records": {}}', b'{"Records": [1]}',
    b'{"Records": [{"eventName": "s3:ObjectCreated:Put"}]}',
    b'{"Records": [{"eventName": 3, "s3": {"bucket": {"name": "images"}, "object": {"key": "a"}}}]}',
    b'{"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {"name": "images"}, "object": {"key": 5}}}]}',
])
def test_malformed_payloads_are_refused(body: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_payload(body)


# --- jobs ---------------------------------------------------------------------------------------


def test_jobs_only_for_allowed_buckets_and_content_events() -> None:
    records = [
        *parse_payload(payload("docs-put.json", bucket="images", key="a b.jpg")),
        *parse_payload(payload("docs-put.json", bucket="other-bucket", key="a.jpg")),
        *parse_payload(payload("docs-put.json", bucket="images", key="t.jpg", event="s3:ObjectCreated:PutTagging")),
        *parse_payload(payload("console-delete.json", bucket="images", key="d/ü+.jpg")),
    ]
    assert jobs_for(records, Settings.of(config())) == [
        Job(WARM, sources.Source("images", "a b.jpg"), "images/a b.jpg"),
        Job(PURGE, sources.Source("images", "d/ü+.jpg"), "images/d/ü+.jpg"),
    ]


@pytest.mark.parametrize("key", ["../secret.jpg", "a/../../b.jpg", "./a.jpg", "a\x00.jpg", "a\r\nb.jpg", ""])
def test_should_ignore_events_for_keys_the_loader_refuses(key: str) -> None:
    records = parse_payload(payload("docs-put.json", bucket="images", key=key))
    assert jobs_for(records, Settings.of(config())) == []


def test_fixed_bucket_and_root_path_map_back_to_the_url_image() -> None:
    conf = config(IMGSTACK_BUCKET="images", IMGSTACK_LOADER_ROOT_PATH="originals")
    records = [
        *parse_payload(payload("docs-put.json", bucket="images", key="originals/x y.jpg")),
        *parse_payload(payload("docs-put.json", bucket="images", key="elsewhere/x.jpg")),
    ]
    assert jobs_for(records, Settings.of(conf)) == [Job(WARM, sources.Source("images", "originals/x y.jpg"), "x y.jpg")]


# --- the warm list ------------------------------------------------------------------------------


def server_derived_key(url: str, accept: str, conf: Config) -> str:
    """What the server computes for a request: the very pipeline its handler runs."""
    from thumbor_plugins import pipeline

    return pipeline.decide(url, accept, Settings.of(conf, security_key=KEY), time.time()).derived_key


@pytest.mark.parametrize("key", ["a.jpg", "dir/with space+plus ü.jpg", "percent%41.png", "smart/x.jpg"])
def test_warm_list_names_exactly_the_keys_the_server_looks_up(key: str) -> None:
    conf = config(AUTO_AVIF=True, AUTO_WEBP=True)
    known = presets.load(None)
    requests = warm_requests(f"images/{key}", sources.Source("images", key), known, key=KEY)
    assert len(requests) == len(known) * 3
    assert {(r.preset, r.format) for r in requests} == {(n, f) for n in known for f in ("avif", "webp", "auto")}
    for request in requests:
        assert server_derived_key(request.url, request.accept, conf) == request.derived_key
        assert request.derived_key.startswith(f"images/{key}/")
        assert "expires" not in request.url  # permanent: one stored result serves every later link


def test_warm_list_dedupes_formats_that_negotiate_alike() -> None:
    known = {"plain": parse("100x100/_"), "forced": parse("100x100/filters:format(webp)/_")}
    known = {name: params.__class__(**{**params.__dict__, "image": ""}) for name, params in known.items()}
    source = sources.Source("images", "a.jpg")
    no_avif = warm_requests("images/a.jpg", source, known, key=KEY, auto_avif=False)
    assert [(r.preset, r.format) for r in no_avif] == [("plain", "webp"), ("plain", "auto"), ("forced", "webp")]
    neither = warm_requests("images/a.jpg", source, known, key=KEY, auto_avif=False, auto_webp=False)
    assert [(r.preset, r.format) for r in neither] == [("plain", "auto"), ("forced", "webp")]
    assert [r.preset for r in warm_requests("images/a.jpg", source, known, key=KEY, names=["forced"])] == ["forced"]
    with pytest.raises(KeyError):
        warm_requests("images/a.jpg", source, known, key=KEY, names=["nope"])


def test_warm_urls_keep_the_base_prefix() -> None:
    [first, *_] = warm_requests("images/a.jpg", sources.Source("images", "a.jpg"), presets.load(None), key=KEY,
                                base="http://127.0.0.1:8888/")
    assert first.url.startswith("http://127.0.0.1:8888/")
    server = config(AUTO_AVIF=True, AUTO_WEBP=True)
    assert server_derived_key(first.url[len("http://127.0.0.1:8888"):], first.accept, server) == first.derived_key


# --- the queue ----------------------------------------------------------------------------------


def job(action: str, key: str) -> Job:
    return Job(action, sources.Source("images", key), f"images/{key}")


class Recorder:
    """A job runner that records start order and holds every job until released."""

    def __init__(self) -> None:
        self.started: list[Job] = []
        self.gates: dict[Job, asyncio.Semaphore] = {}
        self.active: set[sources.Source] = set()
        self.overlap = False

    async def __call__(self, item: Job) -> Outcome:
        if item.source in self.active:
            self.overlap = True
        self.active.add(item.source)
        self.started.append(item)
        await self.gates.setdefault(item, asyncio.Semaphore(0)).acquire()
        self.active.discard(item.source)
        return Outcome(item, ok=True)

    def release(self, item: Job) -> None:
        self.gates.setdefault(item, asyncio.Semaphore(0)).release()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_duplicates_pending_are_coalesced_into_one_job() -> None:
    async def scenario() -> None:
        runner = Recorder()
        depths: list[int] = []
        queue = JobQueue(runner, size=10, workers=1, on_depth=depths.append)
        busy = job(WARM, "busy.jpg")
        [running] = queue.submit([busy])
        await settle()
        assert runner.started == [busy]
        first = queue.submit([job(WARM, "a.jpg"), job(WARM, "a.jpg")])
        second = queue.submit([job(WARM, "a.jpg")])
        assert first[0] is first[1] is second[0]
        assert queue.depth == 1
        # the running job is not joined: it may have read the original before this upload
        [again] = queue.submit([busy])
        assert again is not running and queue.depth == 2
        runner.release(busy)
        runner.release(job(WARM, "a.jpg"))
        runner.release(busy)
        outcome = await asyncio.wait_for(second[0], 5)
        assert outcome.ok and outcome.job == job(WARM, "a.jpg")
        await asyncio.wait_for(again, 5)
        assert runner.started == [busy, job(WARM, "a.jpg"), busy]
        assert depths[-1] == 0 and max(depths) == 2
        await queue.close()

    asyncio.run(scenario())


def test_coalescing_never_reorders_upload_delete_upload() -> None:
    async def scenario() -> None:
        runner = Recorder()
        queue = JobQueue(runner, size=10, workers=2)
        blocker = job(WARM, "x.jpg")
        queue.submit([blocker])
        await settle()
        warm1, purge, warm2 = queue.submit([job(WARM, "k.jpg"), job(PURGE, "k.jpg"), job(WARM, "k.jpg")])
        assert len({id(warm1), id(purge), id(warm2)}) == 3  # the last word (an upload) stays last
        dup = queue.submit([job(WARM, "k.jpg")])[0]
        assert dup is warm2
        for _ in range(3):
            await settle()
            for item in list(runner.gates) + [job(WARM, "k.jpg"), job(PURGE, "k.jpg")]:
                runner.release(item)
        await asyncio.wait_for(asyncio.gather(warm1, purge, warm2), 5)
        assert [j.action for j in runner.started if j.source.key == "k.jpg"] == [WARM, PURGE, WARM]
        assert not runner.overlap  # one job per original at a time, even with two workers
        await queue.close()

    asyncio.run(scenario())


def test_full_queue_refuses_the_whole_event_and_changes_nothing() -> None:
    async def scenario() -> None:
        runner = Recorder()
        queue = JobQueue(runner, size=2, workers=1)
        queue.submit([job(WARM, "running.jpg")])
        await settle()
        queue.submit([job(WARM, "a.jpg")])
        with pytest.raises(QueueFull):
            queue.submit([job(WARM, "b.jpg"), job(WARM, "c.jpg")])
        assert queue.depth == 1  # all or nothing: b.jpg was not queued either
        queue.submit([job(WARM, "a.jpg"), job(WARM, "b.jpg")])  # a.jpg joins, b.jpg fits
        assert queue.depth == 2
        with pytest.raises(QueueFull):
            queue.submit([job(PURGE, "z.jpg")])
        await queue.close()

    asyncio.run(scenario())


def test_a_job_that_raises_resolves_as_failed() -> None:
    async def boom(item: Job) -> Outcome:
        raise RuntimeError("S3 exploded")

    async def scenario() -> None:
        queue = JobQueue(boom, size=1, workers=1)
        [future] = queue.submit([job(PURGE, "a.jpg")])
        outcome = await asyncio.wait_for(future, 5)
        assert not outcome.ok and "S3 exploded" in outcome.detail
        await queue.close()

    asyncio.run(scenario())


# --- SeaweedFS's filer webhook (the embedded stack), on payloads it really sent ---------------------

SEAWEEDFS_EVENTS = Path(__file__).resolve().parent / "fixtures" / "seaweedfs-events"


def seaweedfs_events(name: str) -> list[events.ObjectEvent]:
    from thumbor_plugins.events import seaweedfs

    return seaweedfs.parse_payload((SEAWEEDFS_EVENTS / f"{name}.json").read_bytes())


@pytest.mark.parametrize(("name", "action", "key"), [
    ("create", WARM, "a b/写真+1%.jpg"),  # filer paths are not escaped: taken as they are
    ("overwrite", WARM, "a b/写真+1%.jpg"),
    ("copy", WARM, "c.jpg"),
    ("multipart-complete", WARM, "mp.jpg"),
    ("delete", PURGE, "a b/写真+1%.jpg"),
])
def test_seaweedfs_object_events_map_to_warm_and_purge(name: str, action: str, key: str) -> None:
    [event] = seaweedfs_events(name)
    assert (event.bucket, event.key, event.action) == ("images", key, action)


def test_seaweedfs_rename_purges_the_old_key_and_warms_the_new_one() -> None:
    old, new = seaweedfs_events("rename")
    assert (old.key, old.action) == ("old name.jpg", PURGE)
    assert (new.key, new.action) == ("new name.jpg", WARM)


@pytest.mark.parametrize("name", ["folder-implicit", "folder-marker", "multipart-part"])
def test_seaweedfs_folders_and_multipart_parts_are_not_images(name: str) -> None:
    assert seaweedfs_events(name) == []


@pytest.mark.parametrize("path", ["/buckets/.system/owners/imgstack", "/buckets/images", "/buckets", "/etc/x.jpg"])
def test_seaweedfs_filer_own_entries_are_ignored(path: str) -> None:
    from thumbor_plugins.events import seaweedfs

    body = json.dumps({"event_type": "create", "key": path,
                       "message": {"new_entry": {"name": path.rsplit("/", 1)[-1]}}})
    assert seaweedfs.parse_payload(body) == []


def test_should_refuse_a_notification_with_more_records_than_any_sender_makes() -> None:
    record = json.loads(payload("console-put.json"))["Records"][0]
    assert len(parse_payload(json.dumps({"Records": [record] * 100}))) == 100
    with pytest.raises(PayloadError, match="at most 100"):
        parse_payload(json.dumps({"Records": [record] * 101}))


@pytest.mark.parametrize("body", [
    b"", b"[]", b'{"event_type": "create"}',
    b'{"event_type": "create", "key": "/buckets/images/a.jpg", "message": {}}',
    b'{"event_type": "rename", "key": "/buckets/images/a.jpg", "message": {"old_entry": {}}}',
    b"[" * 100_000,
])
def test_seaweedfs_malformed_payloads_are_refused(body: bytes) -> None:
    from thumbor_plugins.events import seaweedfs

    with pytest.raises(PayloadError):
        seaweedfs.parse_payload(body)


def test_a_warm_stops_when_a_newer_event_for_its_original_is_waiting() -> None:
    """An overwrite or delete queued behind a warm must not wait for renders of an original that
    is gone: the warm stops before its next render."""
    from types import SimpleNamespace

    from thumbor_plugins.events.runner import Runner

    async def scenario() -> None:
        waiting: set[sources.Source] = set()
        gets: list[str] = []

        class S3:
            async def list(self, bucket: str, prefix: str, delimiter: str | None = None):  # noqa: ANN201
                return
                yield

            async def delete(self, bucket: str, keys: list[str]) -> None:
                return None

            async def head(self, bucket: str, key: str) -> None:
                return None

        async def fetch(request) -> int:  # noqa: ANN001
            gets.append(request.url)
            waiting.add(sources.Source("images", "a.jpg"))  # a newer event arrives during the first render
            return 200

        context = SimpleNamespace(
            config=config(IMGSTACK_PRESETS_FILE=None, IMGSTACK_DERIVED_BUCKET="d", AUTO_AVIF=True, AUTO_WEBP=True,
                          IMGSTACK_MAX_LINK_LIFETIME=0, IMGSTACK_SIGNATURE_ALGORITHM="sha1", SECURITY_KEY=KEY),
            server=SimpleNamespace(security_key=KEY, ip="127.0.0.1", port=1))
        runner = Runner(context, s3=S3(), fetch=fetch, superseded=lambda source: source in waiting)
        assert len(runner.requests_for(job(WARM, "a.jpg"))) > 1
        outcome = await runner(job(WARM, "a.jpg"))
        assert outcome.ok and outcome.counts["superseded"] == 1
        assert len(gets) == 1

    asyncio.run(scenario())


def test_a_purge_that_s3_partly_refuses_fails_the_event_and_is_counted_and_logged(caplog) -> None:  # noqa: ANN001
    """DeleteObjects answers 200 and lists the keys it refused: those variants are still served,
    so the job fails (the event is answered 503 and MinIO retries), the refused keys are counted
    in imgstack_purge_delete_failures and named in the log."""
    from types import SimpleNamespace

    from thumbor_plugins import derived, metrics
    from thumbor_plugins.events.runner import Runner
    from thumbor_plugins.s3 import DeleteFailed

    source = sources.Source("images", "a.jpg")
    variants = [derived.derived_key(source, f"{size}x{size}/images/a.jpg", "webp") for size in (10, 20, 30)]
    refused = {variants[0]: "AccessDenied: Access Denied", variants[2]: "InternalError: try again"}

    class S3:
        async def list(self, bucket: str, prefix: str, delimiter: str | None = None):  # noqa: ANN201
            for key in variants:
                yield SimpleNamespace(key=key)

        async def delete(self, bucket: str, keys: list[str]) -> None:
            assert bucket == "d" and keys == variants
            raise DeleteFailed(f"S3 refused to delete {len(refused)} of {len(keys)} objects", refused)

    context = SimpleNamespace(config=config(IMGSTACK_DERIVED_BUCKET="d"),
                              server=SimpleNamespace(security_key=KEY, ip="127.0.0.1", port=1))
    counted = "imgstack_purge_delete_failures_total"
    before = metrics.REGISTRY.get_sample_value(counted)
    outcome = asyncio.run(Runner(context, s3=S3())(job(PURGE, "a.jpg")))
    assert not outcome.ok and "purge failed" in outcome.detail
    assert metrics.REGISTRY.get_sample_value(counted) == before + 2
    logged = "\n".join(record.getMessage() for record in caplog.records if record.name == "imgstack.events")
    assert "refused to delete 2 of 3 variants" in logged and variants[0] in logged and "AccessDenied" in logged

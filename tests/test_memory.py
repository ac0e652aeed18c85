"""The workers' memory tiers (thumbor_plugins.memory): recent originals, confirmed by S3 before
every use, and hot results, dropped by a purge in every worker of the server.

Units first, then against the real S3 server and real Thumbor processes."""

from __future__ import annotations

import asyncio
import io
import time

import httpx
import pytest
from PIL import Image

from thumbor_plugins import memory
from thumbor_plugins.s3.types import ObjectData
from thumbor_plugins.sources import Source

from .conftest import BUCKET, DERIVED, sign
from .test_events import minio_event, post
from .test_ops import scrape, value, wait_for_derived, wait_for_lines
from .test_serving import PLAIN, upload

SOURCE = Source("images", "a/b.jpg")
OTHER = Source("images", "a/c.jpg")


def result(body: bytes = b"x" * 100) -> ObjectData:
    return ObjectData(body=body, etag="e", content_type="image/jpeg", last_modified=None)


# --- units ----------------------------------------------------------------------------------------


def test_purge_counters_are_shared_by_the_workers_of_one_server(tmp_path) -> None:
    one, two = memory.Generations(str(tmp_path)), memory.Generations(str(tmp_path))
    before = two.now(SOURCE)
    one.purged(SOURCE)
    assert two.now(SOURCE) != before
    assert memory.Generations(str(tmp_path)).now(SOURCE) == two.now(SOURCE)  # a worker started later


def test_purges_by_two_workers_at_once_each_move_the_counter(tmp_path) -> None:
    """An entry read between two purges of the same original must be dropped by the second."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    go = context.Event()
    workers = [context.Process(target=_purge_many, args=(str(tmp_path), 50_000, go)) for _ in range(2)]
    for worker in workers:
        worker.start()
    go.set()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert memory.Generations(str(tmp_path)).now(SOURCE)[1] == 100_000


def _purge_many(directory: str, times: int, go) -> None:  # noqa: ANN001
    counters = memory.Generations(directory)
    go.wait(60)
    for _ in range(times):
        counters.purged(SOURCE)


def test_should_not_serve_a_hot_result_purged_by_another_worker(tmp_path) -> None:
    mine, theirs = memory.Generations(str(tmp_path)), memory.Generations(str(tmp_path))
    hot = memory.HotResults(1 << 20, 60, mine)
    hot.put("images/a/b.jpg/r1", result(), mine.now(SOURCE))
    hot.put("images/a/c.jpg/r1", result(), mine.now(OTHER))
    assert hot.get("images/a/b.jpg/r1") is not None
    theirs.purged(SOURCE)
    assert hot.get("images/a/b.jpg/r1") is None
    assert hot.get("images/a/c.jpg/r1") is not None or mine.slot(OTHER) == mine.slot(SOURCE)


def test_should_not_keep_a_result_read_before_a_purge_that_ended_before_it_was_kept() -> None:
    counters = memory.Generations()
    hot = memory.HotResults(1 << 20, 60, counters)
    before = counters.now(SOURCE)  # the request starts, then reads S3 ...
    counters.purged(SOURCE)  # ... while a purge deletes what it read
    hot.put("k", result(), before)
    assert hot.get("k") is None


def test_hot_results_expire_and_are_bounded() -> None:
    entry = 100 + memory.ENTRY_OVERHEAD
    hot = memory.HotResults(8 * entry, 0.2, memory.Generations())
    hot.put("big", result(b"x" * 101), hot.generations.now(SOURCE))  # over an eighth: not kept
    assert hot.get("big") is None
    for index in range(10):
        hot.put(f"k{index}", result(b"x" * 100), hot.generations.now(SOURCE))
    assert len(hot) == 8  # least recently used out
    assert hot.get("k9") is not None
    time.sleep(0.3)
    assert hot.get("k9") is None
    off = memory.HotResults(0, 10, memory.Generations())
    off.put("k", result(), off.generations.now(SOURCE))
    assert off.get("k") is None


def test_recent_originals_keep_bodies_with_an_etag_within_their_budget() -> None:
    entry = 1000 + memory.ENTRY_OVERHEAD
    recent = memory.RecentOriginals(4 * entry)
    recent.put(SOURCE, memory.Original("e1", b"1" * 1000, "image/jpeg", None))
    assert recent.get(SOURCE).etag == "e1"
    recent.put(SOURCE, memory.Original("e2", b"2" * 1001, "image/jpeg", None))  # over a quarter
    assert recent.get(SOURCE) is None  # and the older version is not kept either
    recent.put(SOURCE, memory.Original("", b"3", None, None))
    assert recent.get(SOURCE) is None
    for index in range(5):
        recent.put(Source("images", f"{index}.jpg"), memory.Original("e", b"x" * 1000, None, None))
    assert len(recent) == 4
    assert memory.RecentOriginals(0).get(SOURCE) is None


def test_should_count_each_entrys_bookkeeping_against_the_budget() -> None:
    """64k one-byte icons must not hold far more memory than the budget says."""
    recent = memory.RecentOriginals(64 * memory.ENTRY_OVERHEAD)
    hot = memory.HotResults(64 * memory.ENTRY_OVERHEAD, 60, memory.Generations())
    for index in range(1000):
        recent.put(Source("images", f"{index}.png"), memory.Original("e", b"x", None, None))
        hot.put(f"k{index}", result(b"x"), hot.generations.now(SOURCE))
    assert len(recent) < 64 and len(hot) < 64


def test_a_replayed_original_reads_like_a_download(tmp_path) -> None:
    original = memory.Original("e", b"0123456789", "image/png", None)
    replay = original.replay()
    assert (replay.etag, replay.content_type, replay.length, replay.received) == ("e", "image/png", 10, 0)
    assert asyncio.run(replay.peek(4)) == b"0123"
    assert asyncio.run(replay.read()) == b"0123456789"
    with open(tmp_path / "f", "wb") as file:
        asyncio.run(replay.read_into(file))
    assert (tmp_path / "f").read_bytes() == b"0123456789"


# --- against the real S3 server and Thumbor ----------------------------------------------------------


def solid_png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def test_a_second_render_of_one_original_is_confirmed_by_s3_not_downloaded_again(s3, thumbor_factory, uid) -> None:
    thumbor = thumbor_factory(IMGSTACK_PROCESSES="1")
    key = f"{uid}/recent.jpg"
    upload(s3, key)
    first = httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url, width=101, height=0), headers=PLAIN)
    assert first.status_code == 200
    before = scrape(thumbor.url)
    second = httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url, width=102, height=0), headers=PLAIN)
    assert second.status_code == 200
    assert Image.open(io.BytesIO(second.content)).width == 102
    after = scrape(thumbor.url)
    assert value(after, "imgstack_memory_hits_total", tier="originals") == \
        value(before, "imgstack_memory_hits_total", tier="originals") + 1
    assert value(after, "imgstack_s3_fetched_bytes_total") == value(before, "imgstack_s3_fetched_bytes_total")


def test_should_render_the_new_original_after_an_overwrite_that_sent_no_event(s3, thumbor_factory, uid) -> None:
    """A worker holding the old bytes must not render them once S3 holds others."""
    thumbor = thumbor_factory(IMGSTACK_PROCESSES="1")
    key = f"{uid}/overwritten.png"
    s3.put_object(Bucket=BUCKET, Key=key, Body=solid_png((60, 40), (255, 0, 0)))
    red = httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url, width=30, height=20), headers=PLAIN)
    assert Image.open(io.BytesIO(red.content)).convert("RGB").getpixel((5, 5)) == (255, 0, 0)
    s3.put_object(Bucket=BUCKET, Key=key, Body=solid_png((60, 40), (0, 0, 255)))
    blue = httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url, width=31, height=20), headers=PLAIN)
    assert blue.status_code == 200
    assert Image.open(io.BytesIO(blue.content)).convert("RGB").getpixel((5, 5)) == (0, 0, 255)


def headers_but_the_date(response: httpx.Response) -> list[tuple[str, str]]:
    return sorted((name, value) for name, value in response.headers.items() if name != "date")


#: a permanent link with Last-Modified sent; an expiring link whose format follows Accept
HOT_CASES = {
    "permanent": ({"SEND_IF_MODIFIED_LAST_MODIFIED_HEADERS": "True"}, {}, PLAIN),
    "expiring, negotiated": ({"AUTO_WEBP": "True", "MAX_AGE": "300"},
                             {"expires_in": 3600}, {"Accept": "image/webp,*/*"}),
}


@pytest.mark.parametrize("case", HOT_CASES)
def test_a_repeated_hit_is_served_from_memory_as_s3_served_it(s3, thumbor_factory, uid, case) -> None:
    """The hit from memory is answered before any request handler is made (app.hot_hit): the
    same answer as the handler's, header for header, counted and logged alike."""
    settings, link, accept = HOT_CASES[case]
    thumbor = thumbor_factory(IMGSTACK_PROCESSES="1", **settings)
    key = f"{uid}/hot.jpg"
    upload(s3, key)
    url = sign(f"{BUCKET}/{key}", base=thumbor.url, width=90, height=60, **link)
    rendered = httpx.get(url, headers=accept)
    wait_for_derived(s3, key)
    from_s3 = httpx.get(url, headers=accept)
    before = scrape(thumbor.url)
    from_memory = httpx.get(url, headers=accept)
    after = scrape(thumbor.url)
    assert value(after, "imgstack_memory_hits_total", tier="results") == \
        value(before, "imgstack_memory_hits_total", tier="results") + 1
    assert value(after, "imgstack_result_storage_lookups_total", result="hit") == \
        value(before, "imgstack_result_storage_lookups_total", result="hit") + 1
    assert from_memory.status_code == from_s3.status_code == 200
    assert from_memory.content == from_s3.content == rendered.content
    assert headers_but_the_date(from_memory) == headers_but_the_date(from_s3)
    assert "date" in from_memory.headers and "server" not in from_memory.headers
    # a HEAD is the image handler's: the same headers, no body
    head = httpx.head(url, headers=accept)
    assert head.status_code == 200 and head.content == b""
    assert headers_but_the_date(head) == headers_but_the_date(from_memory)
    logged = wait_for_lines(thumbor.process.log_path, lambda e: uid in e["path"] and e["method"] == "GET", 3)
    assert [(e["status"], e["cache_hit"], e["bytes"]) for e in logged] == [
        (200, False, len(rendered.content)), (200, True, len(rendered.content)), (200, True, len(rendered.content))]
    assert logged[2]["format"] == logged[1]["format"] and logged[2]["client"] == logged[1]["client"] == "127.0.0.1"
    assert logged[2]["path"] == logged[1]["path"] and logged[2]["path"].startswith("/<redacted>/")


def held_in_memory(s3, thumbor, key: str, **link) -> tuple[str, httpx.Response]:  # noqa: ANN001
    """Uploads a photo as ``key``, renders it, then reads its result twice (from S3, then from the
    worker's memory); the link and the last answer."""
    upload(s3, key)
    url = sign(f"{BUCKET}/{key}", base=thumbor.url, width=90, height=60, **link)
    assert httpx.get(url, headers=PLAIN).status_code == 200
    wait_for_derived(s3, key)
    answers = [httpx.get(url, headers=PLAIN) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    return url, answers[-1]


def test_conditional_requests_for_a_hot_result_get_their_304(s3, thumbor_factory, uid) -> None:
    thumbor = thumbor_factory(IMGSTACK_PROCESSES="1", SEND_IF_MODIFIED_LAST_MODIFIED_HEADERS="True")
    url, hot = held_in_memory(s3, thumbor, f"{uid}/conditional.jpg")
    conditional = httpx.get(url, headers=PLAIN | {"If-None-Match": hot.headers["etag"]})
    assert conditional.status_code == 304
    assert conditional.headers["etag"] == hot.headers["etag"]
    since = httpx.get(url, headers=PLAIN | {"If-Modified-Since": hot.headers["last-modified"]})
    assert since.status_code == 304
    assert httpx.get(url, headers=PLAIN | {"If-None-Match": '"other"'}).content == hot.content


def test_should_refuse_an_expired_or_tampered_link_to_a_result_held_in_memory(s3, thumbor_factory, uid) -> None:
    """Links that differ only in expiry share one stored result (its key has no expires()): the
    one held in memory for a valid link must not answer an expired or a tampered one."""
    thumbor = thumbor_factory(IMGSTACK_PROCESSES="1")
    key = f"{uid}/held.jpg"
    valid, _ = held_in_memory(s3, thumbor, key, expires_in=3600)
    expired = sign(f"{BUCKET}/{key}", base=thumbor.url, width=90, height=60, expires_at=int(time.time()) - 1)
    assert httpx.get(expired, headers=PLAIN).status_code == 410
    signature = valid.split("/")[3]
    tampered = valid.replace(signature, signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB"))
    assert httpx.get(tampered, headers=PLAIN).status_code == 403
    assert httpx.get(valid, headers=PLAIN).status_code == 200


def test_should_not_serve_a_deleted_photo_from_any_workers_memory(s3, thumbor_factory, uid) -> None:
    """Every worker of the server has the result in memory; the delete event reaches one of
    them; none serves it afterwards."""
    thumbor = thumbor_factory(IMGSTACK_PROCESSES="2")
    key = f"{uid}/deleted.jpg"
    upload(s3, key)
    url = sign(f"{BUCKET}/{key}", base=thumbor.url, width=80, height=60)
    assert httpx.get(url, headers=PLAIN).status_code == 200
    wait_for_derived(s3, key)
    before = scrape(thumbor.url)
    for _ in range(12):  # new connections: both workers take some (all to one: 1 in 2,048)
        assert httpx.get(url, headers=PLAIN).status_code == 200
    # each worker read it from S3 once, then from memory
    served_from_memory = value(scrape(thumbor.url), "imgstack_memory_hits_total", tier="results") - \
        value(before, "imgstack_memory_hits_total", tier="results")
    assert served_from_memory >= 10
    s3.delete_object(Bucket=BUCKET, Key=key)
    assert post(thumbor, minio_event("console-delete.json", BUCKET, key, safe="")).status_code == 200
    statuses = {httpx.get(url, headers=PLAIN).status_code for _ in range(12)}
    assert statuses == {404}


def test_a_result_deleted_behind_the_servers_back_is_served_for_at_most_the_hot_seconds(
        s3, thumbor_factory, uid) -> None:
    """``imgstack purge`` and another replica's purges reach a worker's memory only by time."""
    thumbor = thumbor_factory(IMGSTACK_PROCESSES="1", IMGSTACK_HOT_RESULTS_SECONDS="2")
    key = f"{uid}/behind.jpg"
    upload(s3, key)
    url = sign(f"{BUCKET}/{key}", base=thumbor.url, width=70, height=50)
    assert httpx.get(url, headers=PLAIN).status_code == 200
    wait_for_derived(s3, key)
    assert httpx.get(url, headers=PLAIN).status_code == 200  # read from S3, now in memory
    s3.delete_object(Bucket=BUCKET, Key=key)
    for stored in s3.list_objects_v2(Bucket=DERIVED, Prefix=f"{BUCKET}/{key}/").get("Contents", []):
        s3.delete_object(Bucket=DERIVED, Key=stored["Key"])
    assert httpx.get(url, headers=PLAIN).status_code == 200  # still in this worker's memory
    time.sleep(2.2)
    assert httpx.get(url, headers=PLAIN).status_code == 404


@pytest.mark.parametrize("setting", ["IMGSTACK_HOT_RESULTS_BYTES", "IMGSTACK_ORIGINALS_CACHE_BYTES"])
def test_memory_tiers_can_be_turned_off(setting) -> None:
    from thumbor.config import Config

    from thumbor_plugins.settings import Settings

    settings = Settings.of(Config(**{setting: "0"}))
    tiers = memory.tiers(settings)
    tiers.originals.put(SOURCE, memory.Original("e", b"x", None, None))
    tiers.results.put("k", result(), tiers.generations.now(SOURCE))
    assert (tiers.originals.get(SOURCE) is None) == (setting == "IMGSTACK_ORIGINALS_CACHE_BYTES")
    assert (tiers.results.get("k") is None) == (setting == "IMGSTACK_HOT_RESULTS_BYTES")


def test_a_result_held_in_memory_is_served_while_renders_fill_every_slot(s3, thumbor_factory, uid) -> None:
    """IMGSTACK_MAX_CONCURRENT_REQUESTS bounds the work in flight; a hit from memory does none."""
    from concurrent.futures import ThreadPoolExecutor

    from .test_rendering import noise_png

    thumbor = thumbor_factory(IMGSTACK_MAX_CONCURRENT_REQUESTS="1", IMGSTACK_PROCESSES="1")
    key = f"{uid}/held.jpg"
    hot, answer = held_in_memory(s3, thumbor, key)
    expected = answer.content
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/slow.png", Body=noise_png(4000, 3000))
    slow = sign(f"{BUCKET}/{uid}/slow.png", base=thumbor.url, width=2000, height=2000, fit_in=True)
    with ThreadPoolExecutor(1) as pool:
        render = pool.submit(httpx.get, slow, headers={"Accept": "image/avif"}, timeout=120)
        time.sleep(0.5)  # the render holds the only slot
        other = httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url, width=91, height=60), headers=PLAIN)
        held = httpx.get(hot, headers=PLAIN)
        assert not render.done(), f"the slow render ended too soon to tell: {render.result()}"
        assert other.status_code == 503  # a miss waits for a slot
        assert held.status_code == 200 and held.content == expected
        assert render.result().status_code == 200

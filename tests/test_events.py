"""POST /events/minio end to end: MinIO's real payloads posted to a real Thumbor, against a real S3
server. Each upload event must leave exactly the variants later browser requests look up; each
delete event must leave no derived URL answering."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from urllib.parse import quote_plus

import httpx
import pytest

from thumbor_plugins import presets
from thumbor_plugins.events import warm_requests
from thumbor_plugins.sources import Source

from .conftest import BUCKET, DERIVED, EVENTS_TOKEN, OTHER_BUCKET, SECURITY_KEY, sign
from .test_serving import derived_objects, upload

MINIO_EVENTS = Path(__file__).resolve().parent / "fixtures" / "minio-events"
AUTH = {"Authorization": f"Bearer {EVENTS_TOKEN}"}
#: what browsers send (Chrome: AVIF and WebP; Safari 14-15: WebP only; an old client: neither)
BROWSERS = {
    "avif": "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
    "webp": "image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5",
    "auto": "image/jpeg",
}
CONTENT_TYPES = {"avif": "image/avif", "webp": "image/webp", "auto": "image/jpeg"}
PRESETS = presets.load(None)


def minio_event(template: str, bucket: str, key: str, *, safe: str = "/", event: str | None = None) -> bytes:
    """A real MinIO payload with bucket and key replaced; the key query-escaped as MinIO does
    (``safe=""`` is Go's url.QueryEscape exactly: ``/`` becomes ``%2F``)."""
    document = json.loads((MINIO_EVENTS / template).read_text())
    record = document["Records"][0]
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    record["s3"]["object"]["key"] = quote_plus(key, safe=safe)
    if event is not None:
        record["eventName"] = document["EventName"] = event
    document["Key"] = f"{bucket}/{key}"
    return json.dumps(document).encode()


def post(thumbor, body: bytes, headers: dict | None = AUTH) -> httpx.Response:
    return httpx.post(f"{thumbor.url}/events/minio", content=body, timeout=120,
                      headers={"Content-Type": "application/json", **(headers or {})})


def expected_variants(key: str) -> list:
    return warm_requests(f"{BUCKET}/{key}", Source(BUCKET, key), PRESETS, key=SECURITY_KEY)


def browser_get(thumbor, key: str, preset: str, accept: str) -> httpx.Response:
    """A browser's request for a preset (a fresh signed link, as an app would make it)."""
    url = sign(f"{BUCKET}/{key}", base=thumbor.url, params=PRESETS[preset])
    return httpx.get(url, headers={"Accept": accept}, timeout=60)


# --- authentication and shape -------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    None,
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": f"Bearer {EVENTS_TOKEN}x"},
    {"Authorization": f"Bearer {EVENTS_TOKEN[:-1]}"},
    {"Authorization": f"Basic {EVENTS_TOKEN}"},
    {"Authorization": EVENTS_TOKEN},
])
def test_should_refuse_a_forged_delete_event_without_the_token(s3, thumbor, uid, headers) -> None:
    key = f"{uid}/keep.jpg"
    stored = f"{BUCKET}/{key}/0000.auto"
    s3.put_object(Bucket=DERIVED, Key=stored, Body=b"variant")
    response = post(thumbor, minio_event("console-delete.json", BUCKET, key), headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert derived_objects(s3, key) == [stored]  # nothing purged


def test_a_refusal_before_the_body_is_read_closes_the_connection_it_announces(thumbor) -> None:
    """Refused from its headers, an event's body is never read, so the server closes the
    connection: it must say so (Connection: close). Without it a keep-alive client sent its next
    request into the closing connection (failed requests under load, bench/soak.py)."""
    with httpx.Client() as client:
        for _ in range(20):
            refused = client.post(f"{thumbor.url}/events/minio", content=b'{"Records": []}' * 50)
            assert refused.status_code == 401 and refused.headers["connection"] == "close"
            assert client.get(f"{thumbor.url}/healthcheck").status_code == 200


@pytest.mark.parametrize("body", [b"{not json", b"", b"[]", b'{"Records": "x"}',
                                  b'{"Records": [{"eventName": "s3:ObjectCreated:Put"}]}'])
def test_malformed_payload_is_400(thumbor, body) -> None:
    assert post(thumbor, body).status_code == 400


def test_other_methods_are_not_allowed(thumbor) -> None:
    assert httpx.get(f"{thumbor.url}/events/minio", headers=AUTH).status_code == 405


def test_endpoint_is_absent_without_a_token(thumbor_factory) -> None:
    thumbor = thumbor_factory(IMGSTACK_EVENTS_TOKEN="")
    response = post(thumbor, (MINIO_EVENTS / "docs-put.json").read_bytes())
    assert response.status_code in (400, 403, 404, 405)  # the image handler answers: no events route
    assert "jobs" not in response.text


@pytest.mark.parametrize("bucket, event", [
    (OTHER_BUCKET, "s3:ObjectCreated:Put"),            # outside IMGSTACK_ALLOWED_BUCKETS
    (DERIVED, "s3:ObjectCreated:Put"),                 # never warm our own output
    (BUCKET, "s3:ObjectAccessed:Get"),                 # not an upload or a delete
    (BUCKET, "s3:ObjectCreated:PutTagging"),           # metadata only
])
def test_events_outside_our_scope_are_acknowledged_and_ignored(s3, thumbor, uid, bucket, event) -> None:
    key = f"{uid}/ignored.jpg"
    upload(s3, key, bucket=bucket)
    response = post(thumbor, minio_event("console-put.json", bucket, key, event=event))
    assert response.status_code == 200, response.text
    assert response.json()["jobs"] == 0
    listing = s3.list_objects_v2(Bucket=DERIVED, Prefix=f"{bucket}/{key}/")
    assert listing.get("KeyCount", 0) == 0


@pytest.mark.parametrize("key", ["../escape.jpg", "a/../../b.jpg", "nul\x00.jpg"])
def test_should_ignore_events_with_traversal_or_nul_keys(thumbor, key) -> None:
    response = post(thumbor, minio_event("console-put.json", BUCKET, key))
    assert response.status_code == 200
    assert response.json()["jobs"] == 0


# --- upload: variants made and served -----------------------------------------------------------


def test_upload_event_warms_every_preset_in_every_format_and_later_requests_hit(s3, thumbor, uid) -> None:
    key = f"{uid}/my photo ü+1.jpg"
    upload(s3, key)
    response = post(thumbor, minio_event("console-put.json", BUCKET, key))
    assert response.status_code == 200, response.text
    expected = expected_variants(key)
    assert len(expected) == len(PRESETS) * 3
    # acknowledged only when done: every variant is stored by the time the 200 arrives
    assert sorted(derived_objects(s3, key, wait=0)) == sorted(r.derived_key for r in expected)

    # the original is gone: a 200 now can only come from the result storage
    s3.delete_object(Bucket=BUCKET, Key=key)
    for request in expected:
        served = browser_get(thumbor, key, request.preset, BROWSERS[request.format])
        assert served.status_code == 200, (request.preset, request.format, served.status_code)
        assert served.headers["content-type"] == CONTENT_TYPES[request.format]
        assert served.headers["vary"] == "Accept"
    assert len(derived_objects(s3, key)) == len(expected)  # served from storage, nothing new rendered


def test_upload_event_warms_in_private_mode_where_every_link_must_expire(s3, thumbor_factory, uid) -> None:
    thumbor = thumbor_factory(IMGSTACK_REQUIRE_EXPIRES="true", IMGSTACK_MAX_LINK_LIFETIME="300")
    key = f"{uid}/private.jpg"
    upload(s3, key)
    response = post(thumbor, minio_event("console-put.json", BUCKET, key))
    assert response.status_code == 200, response.text
    assert sorted(derived_objects(s3, key, wait=0)) == sorted(r.derived_key for r in expected_variants(key))
    # a permanent link is still refused there
    assert httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url, params=PRESETS["thumb"])).status_code == 403


def test_upload_event_for_a_missing_original_is_acknowledged(thumbor, uid) -> None:
    """Uploaded then deleted before the event arrived: nothing to render, nothing to retry."""
    response = post(thumbor, minio_event("docs-put.json", BUCKET, f"{uid}/gone.jpg"))
    assert response.status_code == 200, response.text


# --- delete: variants purged ----------------------------------------------------------------------


def test_delete_event_purges_every_variant_and_every_derived_url_answers_404(s3, thumbor, uid) -> None:
    key = f"{uid}/sub dir/to delete+.jpg"
    upload(s3, key)
    assert post(thumbor, minio_event("console-put.json", BUCKET, key)).status_code == 200
    # plus a variant that is no preset, made by a browser
    custom = sign(f"{BUCKET}/{key}", base=thumbor.url, width=77, height=55)
    assert httpx.get(custom, headers={"Accept": "image/jpeg"}).status_code == 200
    assert len(derived_objects(s3, key, at_least=len(PRESETS) * 3 + 1)) == len(PRESETS) * 3 + 1

    s3.delete_object(Bucket=BUCKET, Key=key)
    # Go's url.QueryEscape spelling: '/' as %2F
    response = post(thumbor, minio_event("console-delete.json", BUCKET, key, safe=""))
    assert response.status_code == 200, response.text
    assert derived_objects(s3, key, wait=0) == []
    for request in expected_variants(key):
        assert browser_get(thumbor, key, request.preset, BROWSERS[request.format]).status_code == 404
    assert httpx.get(custom, headers={"Accept": "image/jpeg"}).status_code == 404


def test_should_not_purge_the_variants_of_originals_in_a_folder_named_like_the_deleted_key(s3, thumbor, uid) -> None:
    """``samples`` and ``samples/portrait.jpg`` are two originals: deleting the first must leave
    every variant of the second (the derived prefix ``images/samples/`` covers both)."""
    folder_key, inner_key = f"{uid}/samples", f"{uid}/samples/portrait.jpg"
    upload(s3, folder_key)
    upload(s3, inner_key)
    for key in (folder_key, inner_key):
        assert httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url, width=40, height=30),
                         headers={"Accept": "image/jpeg"}).status_code == 200
    inner = derived_objects(s3, inner_key, at_least=1)
    s3.delete_object(Bucket=BUCKET, Key=folder_key)
    assert post(thumbor, minio_event("console-delete.json", BUCKET, folder_key)).status_code == 200
    listing = s3.list_objects_v2(Bucket=DERIVED, Prefix=f"{BUCKET}/{folder_key}/")
    left = sorted(item["Key"] for item in listing.get("Contents", []))
    assert left == inner  # the deleted original's own variant went, the folder's stayed


@pytest.mark.parametrize("key", ["{uid}/", "{uid}//x.jpg", "/{uid}/x.jpg"])
def test_should_ignore_events_for_keys_with_empty_segments(s3, thumbor, uid, key) -> None:
    """A folder marker or a key with an empty segment is no image; before, its purge covered the
    derived prefix of a whole folder."""
    upload(s3, f"{uid}/kept.jpg")
    assert httpx.get(sign(f"{BUCKET}/{uid}/kept.jpg", base=thumbor.url, width=40, height=30),
                     headers={"Accept": "image/jpeg"}).status_code == 200
    kept = derived_objects(s3, f"{uid}/kept.jpg", at_least=1)
    response = post(thumbor, minio_event("console-delete.json", BUCKET, key.format(uid=uid), safe=""))
    assert response.status_code == 200 and response.json()["jobs"] == 0
    assert derived_objects(s3, f"{uid}/kept.jpg", wait=0) == kept


def test_overwrite_purges_old_variants_before_warming_the_new_image(s3, thumbor, uid) -> None:
    key = f"{uid}/overwritten.jpg"
    upload(s3, key)
    assert post(thumbor, minio_event("console-put.json", BUCKET, key)).status_code == 200
    thumb = next(r for r in expected_variants(key) if r.preset == "thumb" and r.format == "auto")
    before = s3.get_object(Bucket=DERIVED, Key=thumb.derived_key)["Body"].read()
    custom = sign(f"{BUCKET}/{key}", base=thumbor.url, width=64, height=64)
    assert httpx.get(custom, headers={"Accept": "image/jpeg"}).status_code == 200
    custom_key = next(k for k in derived_objects(s3, key, at_least=len(PRESETS) * 3 + 1) if k not in
                      {r.derived_key for r in expected_variants(key)})

    upload(s3, key, "800px-Guido-portrait-2014.jpg")  # a different photo under the same key
    assert post(thumbor, minio_event("console-put.json", BUCKET, key)).status_code == 200
    remaining = derived_objects(s3, key, wait=0)
    assert custom_key not in remaining  # the stale custom variant was purged
    assert sorted(remaining) == sorted(r.derived_key for r in expected_variants(key))
    after = s3.get_object(Bucket=DERIVED, Key=thumb.derived_key)["Body"].read()
    assert after != before
    served = httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url, params=PRESETS["thumb"]),
                       headers={"Accept": "image/jpeg"})
    assert served.content == after


# --- queue ----------------------------------------------------------------------------------------


def test_full_queue_answers_503_and_the_retried_event_is_done(s3, thumbor_factory, uid) -> None:
    # the queue is per worker process: one worker, so the burst meets one queue
    thumbor = thumbor_factory(IMGSTACK_EVENTS_QUEUE_SIZE="1", IMGSTACK_EVENTS_WORKERS="1", IMGSTACK_PROCESSES="1")
    keys = [f"{uid}/burst-{n}.jpg" for n in range(4)]
    for key in keys:
        upload(s3, key)
    responses: dict[str, httpx.Response] = {}

    def send(key: str) -> None:
        responses[key] = post(thumbor, minio_event("console-put.json", BUCKET, key))

    threads = [threading.Thread(target=send, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    statuses = sorted(response.status_code for response in responses.values())
    assert len(statuses) == len(keys)
    assert 200 in statuses and 503 in statuses, statuses
    assert set(statuses) <= {200, 503}
    refused = [key for key, response in responses.items() if response.status_code == 503]
    for key in refused:
        assert responses[key].headers["retry-after"]
        assert responses[key].json()["reason"] in ("overload", "timeout")
    # MinIO keeps a refused event and sends it again: then it is done
    for key in refused:
        assert post(thumbor, minio_event("console-put.json", BUCKET, key)).status_code == 200
    for key in keys:
        assert len(derived_objects(s3, key, wait=0)) == len(PRESETS) * 3, key


def test_png_upload_keeps_transparency_variants_in_png(s3, thumbor, uid) -> None:
    key = f"{uid}/alpha.png"
    upload(s3, key, "PNG_transparency_demonstration_1.png")
    assert post(thumbor, minio_event("docs-put.json", BUCKET, key)).status_code == 200
    auto = next(r for r in expected_variants(key) if r.preset == "thumb" and r.format == "auto")
    s3.delete_object(Bucket=BUCKET, Key=key)
    served = browser_get(thumbor, key, auto.preset, "image/png")
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/png"

"""End to end over HTTP: a real Thumbor process with our loader and result storage, against a
real S3 server."""

from __future__ import annotations

import io
import time

import httpx
import pytest
from PIL import Image

from thumbor_plugins import embedded

from .conftest import BUCKET, DERIVED, FIXTURES, OTHER_BUCKET, sign, thumbor_env
from .test_ops import scrape, wait_until_stored

JPEG = "800px-Katherine_Maher.jpg"
PLAIN = {"Accept": "image/jpeg"}  # no negotiation: the source's format comes back


def upload(s3, key: str, name: str = JPEG, bucket: str = BUCKET) -> bytes:
    body = (FIXTURES / name).read_bytes()
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return body


def derived_objects(s3, key: str, *, at_least: int = 0, wait: float = 10.0) -> list[str]:
    """Derived objects of ``key``; Thumbor stores a result after answering, so wait (bounded) for
    ``at_least`` of them to appear."""
    deadline = time.monotonic() + wait
    while True:
        listing = s3.list_objects_v2(Bucket=DERIVED, Prefix=f"{BUCKET}/{key}/")
        keys = [item["Key"] for item in listing.get("Contents", [])]
        if len(keys) >= at_least or time.monotonic() > deadline:
            return keys
        time.sleep(0.1)


def test_signed_url_renders_a_real_jpeg(s3, thumbor, uid) -> None:
    key = f"{uid}/portrait.jpg"
    upload(s3, key)
    response = httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url, width=300, height=200), headers=PLAIN)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(response.content)).size == (300, 200)


def test_missing_key_is_404(thumbor, uid) -> None:
    response = httpx.get(sign(f"{BUCKET}/{uid}/nope.jpg", base=thumbor.url, width=300, height=200))
    assert response.status_code == 404


def test_should_refuse_keys_that_are_not_utf8_once_decoded_with_400(thumbor) -> None:
    from thumbor_plugins.urls import Signer

    from .conftest import SECURITY_KEY

    path = f"300x200/{BUCKET}/%ff.jpg"
    response = httpx.get(f"{thumbor.url}/{Signer([SECURITY_KEY]).sign(path)}/{path}")
    assert response.status_code == 400


def test_bucket_outside_allow_list_is_404_even_when_object_exists(s3, thumbor, uid) -> None:
    upload(s3, f"{uid}.jpg", bucket=OTHER_BUCKET)
    response = httpx.get(sign(f"{OTHER_BUCKET}/{uid}.jpg", base=thumbor.url, width=300, height=200))
    assert response.status_code == 404


def test_should_refuse_reading_the_derived_bucket_through_the_loader(s3, thumbor, uid) -> None:
    s3.put_object(Bucket=DERIVED, Key=f"{uid}.jpg", Body=(FIXTURES / JPEG).read_bytes())
    response = httpx.get(sign(f"{DERIVED}/{uid}.jpg", base=thumbor.url, width=30, height=20))
    assert response.status_code == 404


@pytest.mark.parametrize(
    "name",
    ["プロフィール 画像+1.png", "with space.png", "plus+sign.png", "percent%41.png", "dir/deep er/ü+%20.png"],
)
def test_keys_with_spaces_plus_percent_and_unicode_round_trip(s3, thumbor, uid, name) -> None:
    key = f"{uid}/{name}"
    upload(s3, key, "PNG_transparency_demonstration_1.png")
    response = httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url, width=100, height=0),
                         headers={"Accept": "image/png"})
    assert response.status_code == 200, (name, response.status_code)
    assert response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).width == 100


def test_should_refuse_original_over_byte_cap_with_413(s3, thumbor_factory, uid) -> None:
    thumbor = thumbor_factory(IMGSTACK_MAX_SOURCE_BYTES="50000")
    key = f"{uid}/big.jpg"
    body = upload(s3, key)
    assert len(body) > 50000
    response = httpx.get(sign(f"{BUCKET}/{key}", base=thumbor.url, width=300, height=200))
    assert response.status_code == 413
    small = f"{uid}/small.jpg"
    upload(s3, small, "focal.jpg")  # 11 kB: under the cap
    response = httpx.get(sign(f"{BUCKET}/{small}", base=thumbor.url, width=30, height=30))
    assert response.status_code == 200


def test_second_request_is_a_result_storage_hit(s3, thumbor, uid) -> None:
    key = f"{uid}/hit.jpg"
    upload(s3, key)
    url = sign(f"{BUCKET}/{key}", base=thumbor.url, width=120, height=80)
    before = scrape(thumbor.url)
    first = httpx.get(url, headers=PLAIN)
    assert first.status_code == 200
    # stored and checked against the original (deleting it before the check withdraws the result)
    wait_until_stored(thumbor.url, before)
    assert len(derived_objects(s3, key)) == 1
    # the source is gone: a 200 now can only come from the result storage, not the loader
    s3.delete_object(Bucket=BUCKET, Key=key)
    second = httpx.get(url, headers=PLAIN)
    assert second.status_code == 200
    assert second.content == first.content
    assert len(derived_objects(s3, key)) == 1


def test_fallback_image_served_briefly_for_missing_originals(s3, thumbor_factory, uid) -> None:
    fallback = f"{uid}/_fallback.png"
    upload(s3, fallback, "PNG_transparency_demonstration_1.png")
    thumbor = thumbor_factory(IMGSTACK_FALLBACK_IMAGE=f"{BUCKET}/{fallback}", MAX_AGE_TEMP_IMAGE="7")
    missing = f"{uid}/missing.jpg"
    response = httpx.get(sign(f"{BUCKET}/{missing}", base=thumbor.url, width=50, height=50),
                         headers={"Accept": "image/png"})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=7"
    assert derived_objects(s3, missing) == []  # a stand-in is never stored as the real rendition


def test_s3_down_is_502_or_504_quickly_and_healthcheck_still_answers(thumbor_factory, tmp_path, uid) -> None:
    server = embedded.start_s3(tmp_path / "s3-doomed")
    thumbor = None
    try:
        embedded.ensure_buckets(server.endpoint_url, server.access_key, server.secret_key, [BUCKET, DERIVED])
        env = thumbor_env(server, IMGSTACK_S3_CONNECT_TIMEOUT="1", IMGSTACK_S3_READ_TIMEOUT="2")
        thumbor = embedded.start_thumbor(env, tmp_path / "thumbor.log")
        url = sign(f"{BUCKET}/{uid}.jpg", base=thumbor.url, width=10, height=10)
        assert httpx.get(url).status_code == 404  # S3 is up: the key is simply missing
        server.stop()
        started = time.monotonic()
        response = httpx.get(url, timeout=60)
        elapsed = time.monotonic() - started
        assert response.status_code in (502, 504)
        assert elapsed < 30, f"took {elapsed:.1f}s"  # bounded, not hung (the bound is generous on purpose)
        assert httpx.get(thumbor.url + "/healthcheck").status_code == 200
    finally:
        if thumbor is not None:
            thumbor.stop()
        server.stop()


def test_sigterm_closes_the_s3_connections_cleanly(s3, s3_server, tmp_path, uid) -> None:
    from thumbor_plugins import embedded

    from .conftest import thumbor_env

    upload(s3, f"{uid}/a.jpg")
    log = tmp_path / "thumbor.log"
    thumbor = embedded.start_thumbor(thumbor_env(s3_server), log)
    try:
        for width in range(40, 46):  # renders, stores, then hits: pooled connections stay open
            for _ in range(2):
                url = sign(f"{BUCKET}/{uid}/a.jpg", base=thumbor.url, width=width, height=40)
                assert httpx.get(url).status_code == 200
        assert httpx.get(f"{thumbor.url}/healthcheck/ready").status_code == 200
        assert httpx.get(f"{thumbor.url}/metrics").status_code == 200
        time.sleep(6)  # idle a while: the leak showed only after pooled connections sat idle
    finally:
        thumbor.stop()
    assert thumbor.process.popen.returncode == 0
    text = log.read_text()
    assert "Caught signal: 15" in text
    assert "Unclosed" not in text, text[-2000:]


def test_thumbor_refuses_to_start_without_security_key(s3_server, tmp_path) -> None:
    env = thumbor_env(s3_server)
    del env["SECURITY_KEY"]
    with pytest.raises(embedded.StartError, match="(?i)security key"):
        embedded.start_thumbor(env, tmp_path / "thumbor.log", timeout=30)


def test_result_storage_expiration_makes_old_results_a_miss(s3, thumbor_factory, uid) -> None:
    thumbor = thumbor_factory(RESULT_STORAGE_EXPIRATION_SECONDS="1")
    key = f"{uid}/ttl.jpg"
    upload(s3, key)
    url = sign(f"{BUCKET}/{key}", base=thumbor.url, width=60, height=40)
    assert httpx.get(url, headers=PLAIN).status_code == 200
    assert len(derived_objects(s3, key, at_least=1)) == 1
    s3.delete_object(Bucket=BUCKET, Key=key)
    time.sleep(2.5)
    # the stored result is too old: a miss, so the (deleted) original is needed again
    assert httpx.get(url, headers=PLAIN).status_code == 404

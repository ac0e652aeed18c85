"""Private links over HTTP against a real Thumbor + S3: expiring signed URLs, every tampering
attempt refused before any S3 access, key rotation, cache headers."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import httpx
import pytest
from libthumbor import CryptoURL
from libthumbor.url_signers.base64_hmac_sha1 import UrlSigner

from thumbor_plugins import embedded

from .conftest import BUCKET, SECURITY_KEY, sign, thumbor_env
from .tcp_counter import CountingProxy
from .test_serving import PLAIN, derived_objects, upload

OLD_KEY = "the-key-we-rotated-out-0123456789"


@pytest.fixture(scope="module")
def counted(s3_server, tmp_path_factory):
    """A Thumbor whose every S3 byte goes through a counting proxy (old key still accepted)."""
    proxy = CountingProxy("127.0.0.1", int(urlsplit(s3_server.endpoint_url).port))
    env = thumbor_env(s3_server, IMGSTACK_S3_ENDPOINT_URL=proxy.url, IMGSTACK_VERIFY_KEYS=OLD_KEY, MAX_AGE="3600")
    thumbor = embedded.start_thumbor(env, tmp_path_factory.mktemp("counted") / "thumbor.log")
    try:
        yield thumbor, proxy
    finally:
        thumbor.stop()
        proxy.close()


@pytest.fixture
def photo(s3, uid) -> str:
    key = f"{uid}/photo.jpg"
    upload(s3, key)
    return f"{BUCKET}/{key}"


def _path(url: str) -> str:
    return urlsplit(url).path


def _swap_path(url: str, new_path: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{new_path}"


def assert_refused_without_s3(thumbor, proxy, url: str, status: int, method: str = "GET") -> None:
    before = proxy.settled()
    response = httpx.request(method, url, headers=PLAIN)
    assert response.status_code == status, (url, response.status_code)
    assert response.headers.get("cache-control") == "no-store"
    time.sleep(0.05)
    assert proxy.bytes_up == before, "a refused request reached S3"


def test_expiring_link_is_served_privately_until_expiry(counted, photo) -> None:
    thumbor, _ = counted
    url = sign(photo, base=thumbor.url, width=120, height=80, expires_in=600)
    response = httpx.get(url, headers=PLAIN)
    assert response.status_code == 200
    match = re.fullmatch(r"private, max-age=(\d+)", response.headers["cache-control"])
    assert match and 590 <= int(match.group(1)) <= 600
    assert "expires" not in response.headers


def test_expiring_link_caps_max_age_at_max_age(counted, photo) -> None:
    thumbor, _ = counted
    response = httpx.get(sign(photo, base=thumbor.url, width=120, height=80, expires_in=86400 * 30), headers=PLAIN)
    assert response.headers["cache-control"] == "private, max-age=3600"


def test_permanent_link_is_public(counted, photo) -> None:
    thumbor, _ = counted
    response = httpx.get(sign(photo, base=thumbor.url, width=120, height=80), headers=PLAIN)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=3600"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_expired_link_is_410_before_any_s3_access(counted, photo, method) -> None:
    thumbor, proxy = counted
    url = sign(photo, base=thumbor.url, width=120, height=80, expires_at=int(time.time()) - 1)
    assert_refused_without_s3(thumbor, proxy, url, 410, method)


def test_head_behaves_as_get_for_valid_link(counted, photo) -> None:
    thumbor, _ = counted
    url = sign(photo, base=thumbor.url, width=120, height=80, expires_in=600)
    head = httpx.head(url, headers=PLAIN)
    assert head.status_code == 200
    assert head.headers["content-type"] == "image/jpeg"
    assert head.content == b""


def test_should_reject_expiry_changed(counted, photo) -> None:
    thumbor, proxy = counted
    url = sign(photo, base=thumbor.url, width=120, height=80, expires_at=int(time.time()) + 60)
    extended = re.sub(r"expires\((\d+)\)", lambda m: f"expires({int(m.group(1)) + 86400})", url)
    assert extended != url
    assert_refused_without_s3(thumbor, proxy, extended, 403)


def test_should_reject_expires_filter_removed(counted, photo) -> None:
    thumbor, proxy = counted
    url = sign(photo, base=thumbor.url, width=120, height=80, filters="quality(80)", expires_in=60)
    stripped = re.sub(r":expires\(\d+\)", "", url)
    assert "expires" not in stripped
    assert_refused_without_s3(thumbor, proxy, stripped, 403)
    only = sign(photo, base=thumbor.url, width=120, height=80, expires_in=60)
    assert_refused_without_s3(thumbor, proxy, re.sub(r"filters:expires\(\d+\)/", "", only), 403)


def test_should_reject_expires_filter_moved(counted, photo) -> None:
    thumbor, proxy = counted
    url = sign(photo, base=thumbor.url, width=120, height=80, filters="quality(80)", expires_in=60)
    moved = re.sub(r"filters:quality\(80\):(expires\(\d+\))", r"filters:\1:quality(80)", url)
    assert moved != url
    assert_refused_without_s3(thumbor, proxy, moved, 403)


def test_should_reject_signature_from_another_path(counted, photo, uid) -> None:
    thumbor, proxy = counted
    mine = sign(photo, base=thumbor.url, width=120, height=80)
    other = sign(f"{BUCKET}/{uid}/secret.jpg", base=thumbor.url, width=120, height=80)
    forged = mine.split("/")[3]
    parts = other.split("/")
    parts[3] = forged
    assert_refused_without_s3(thumbor, proxy, "/".join(parts), 403)
    # same image, another size, same signature
    assert_refused_without_s3(thumbor, proxy, mine.replace("/120x80/", "/1200x800/"), 403)


def test_should_reject_another_deployments_key(counted, photo) -> None:
    thumbor, proxy = counted
    url = sign(photo, base=thumbor.url, width=120, height=80, key="someone-elses-key")
    assert_refused_without_s3(thumbor, proxy, url, 403)


@pytest.mark.parametrize("mangle", [lambda s: s[:-1], lambda s: s[:10], lambda s: s + "=", lambda s: s + "AAAA",
                                    lambda s: s.rstrip("="), lambda s: s.replace("-", "+").replace("_", "/")])
def test_should_reject_truncated_or_padded_signature(counted, photo, mangle) -> None:
    thumbor, proxy = counted
    # the first size whose signature has a character the mangling changes (the key, and so the
    # signatures, differ from run to run)
    parts = next(parts for width in range(121, 400)
                 if mangle((parts := sign(photo, base=thumbor.url, width=width, height=80).split("/"))[3]) != parts[3])
    parts[3] = mangle(parts[3])
    assert_refused_without_s3(thumbor, proxy, "/".join(parts), 403)


@pytest.mark.parametrize(
    ("original", "variant"),
    [("/120x80/", "/120x80%2F"), ("/images/", "/%69mages/"), ("photo.jpg", "photo%2Ejpg"), ("photo.jpg", "PHOTO.jpg")],
)
def test_should_reject_percent_encoded_variants_of_the_same_path(counted, photo, original, variant) -> None:
    thumbor, proxy = counted
    url = sign(photo, base=thumbor.url, width=120, height=80)
    tampered = url.replace(original, variant)
    assert tampered != url
    assert_refused_without_s3(thumbor, proxy, tampered, 403)


def test_should_reject_unsigned_unsafe_urls(counted, photo) -> None:
    thumbor, proxy = counted
    assert_refused_without_s3(thumbor, proxy, f"{thumbor.url}/unsafe/120x80/{photo}", 403)
    assert_refused_without_s3(thumbor, proxy, f"{thumbor.url}/120x80/{photo}", 403)


def test_signed_but_malformed_is_400(counted, photo) -> None:
    thumbor, proxy = counted
    from thumbor_plugins.urls import Signer

    # two expiries: which one would count? Refused as malformed, not guessed
    path = f"120x80/filters:expires(4102444800):expires(4102444801)/{photo}"
    url = f"{thumbor.url}/{Signer([SECURITY_KEY]).sign(path)}/{path}"
    assert_refused_without_s3(thumbor, proxy, url, 400)


def test_rotated_out_key_in_verify_keys_still_works(counted, photo) -> None:
    thumbor, _ = counted
    response = httpx.get(sign(photo, base=thumbor.url, width=120, height=80, key=OLD_KEY), headers=PLAIN)
    assert response.status_code == 200


def test_two_expiries_share_one_stored_result(counted, s3, photo) -> None:
    thumbor, _ = counted
    key = photo.split("/", 1)[1]
    now = int(time.time())
    for expires_at in (now + 600, now + 1200):
        response = httpx.get(sign(photo, base=thumbor.url, width=64, height=64, expires_at=expires_at), headers=PLAIN)
        assert response.status_code == 200
    time.sleep(0.5)
    assert len(derived_objects(s3, key, at_least=1)) == 1


def test_libthumbor_crypto_url_with_expires_is_served(counted, photo) -> None:
    thumbor, _ = counted
    path = CryptoURL(key=SECURITY_KEY).generate(
        width=120, height=80, smart=True, image_url=photo, filters=[f"expires({int(time.time()) + 300})"]
    )
    response = httpx.get(thumbor.url + path, headers=PLAIN)
    assert response.status_code == 200
    assert response.headers["cache-control"].startswith("private, max-age=")


def test_our_permanent_urls_validate_with_libthumbor_signer(photo) -> None:
    url = sign(photo, base="http://img.example.com", width=300, height=200, smart=True)
    _, signature, path = _path(url).split("/", 2)
    assert UrlSigner(SECURITY_KEY).validate(signature.encode(), path)


def test_private_mode_requires_expires_and_caps_lifetime(thumbor_factory, photo) -> None:
    thumbor = thumbor_factory(IMGSTACK_REQUIRE_EXPIRES="true", IMGSTACK_MAX_LINK_LIFETIME="3600")
    assert httpx.get(sign(photo, base=thumbor.url, width=50, height=50)).status_code == 403
    assert httpx.get(sign(photo, base=thumbor.url, width=50, height=50, expires_in=7200)).status_code == 403
    ok = httpx.get(sign(photo, base=thumbor.url, width=50, height=50, expires_in=600), headers=PLAIN)
    assert ok.status_code == 200


def test_sha256_mode_accepts_sha256_and_refuses_sha1(thumbor_factory, photo) -> None:
    thumbor = thumbor_factory(IMGSTACK_SIGNATURE_ALGORITHM="sha256")
    strong = sign(photo, base=thumbor.url, width=50, height=50, algorithm="sha256")
    assert httpx.get(strong, headers=PLAIN).status_code == 200
    assert httpx.get(sign(photo, base=thumbor.url, width=50, height=50)).status_code == 403


@pytest.mark.parametrize("filters", [
    "Expires(1)",            # not a filter Thumbor runs: it would be skipped, the link permanent
    "fill(expires(1))",      # an expiry hidden in another filter's arguments
    "format(exe)",           # not a format: would name a derived key
    "no_such_filter(1)",
])
def test_should_answer_400_for_filters_the_server_would_not_apply(counted, photo, filters) -> None:
    thumbor, proxy = counted
    url = sign(photo, base=thumbor.url, width=50, height=50, filters=filters)
    assert_refused_without_s3(thumbor, proxy, url, 400)


@pytest.mark.parametrize("options, expected", [
    ({"filters": "max_age(60)"}, "public, max-age=60"),
    ({"filters": "max_age(999999)"}, "public, max-age=3600"),  # never above MAX_AGE
    ({"filters": "max_age(60)", "expires_in": 600}, "private, max-age=60"),
])
def test_signed_max_age_lowers_cache_control_and_never_raises_it(counted, photo, options, expected) -> None:
    thumbor, _ = counted
    url = sign(photo, base=thumbor.url, width=64, height=48, **options)
    miss = httpx.get(url, headers=PLAIN)
    assert miss.status_code == 200
    assert miss.headers["cache-control"] == expected
    time.sleep(0.5)  # stored: the next one is a hit, which runs no filter
    assert httpx.get(url, headers=PLAIN).headers["cache-control"] == expected


# --- error responses ---------------------------------------------------------------------------


def test_error_responses_are_short_plain_text_without_reflected_input_or_server_version(counted, photo) -> None:
    """A person who opens a bad link sees why, in plain text; nothing of the request comes back
    (no HTML, no URL: nothing a browser could run), and no software version is announced."""
    thumbor, _ = counted
    good = sign(photo, base=thumbor.url, width=120, height=80, expires_in=600)
    signature = good.split("/")[3]
    script = "%3Cscript%3Ealert(1)%3C%2Fscript%3E"
    cases = [
        (good.replace(signature, "A" * len(signature)), 403, "403 bad signature\n"),
        (sign(photo, base=thumbor.url, width=120, height=80, expires_at=int(time.time()) - 5), 410,
         "410 link expired\n"),
        (f"{thumbor.url}/{'B' * 28}/120x80/{script}/a.jpg", 403, "403 bad signature\n"),
        (sign(f"{BUCKET}/missing-{script}.jpg", base=thumbor.url, width=10, height=10), 404, "404 not found\n"),
    ]
    for url, status, body in cases:
        response = httpx.get(url, headers=PLAIN)
        assert (response.status_code, response.text) == (status, body), url
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "server" not in response.headers
        assert "script" not in response.text
    posted = httpx.post(good, content=b"x")
    assert (posted.status_code, posted.text) == (405, "405 method not allowed\n")
    assert "server" not in posted.headers and "server" not in httpx.get(good, headers=PLAIN).headers

"""The pure request pipeline (thumbor_plugins/pipeline.py), without Thumbor, tornado or S3: every
decision and every refusal the image handler relies on, and the cache policy."""

from __future__ import annotations

import datetime
import re
import subprocess
import sys

import pytest

from thumbor_plugins import presets
from thumbor_plugins.pipeline import Decision, Refusal, cache_control, decide, public_text, varies
from thumbor_plugins.settings import Settings
from thumbor_plugins.sources import Source
from thumbor_plugins.urls import build_url

KEY = "pipeline-test-key-0123456789abcdef"
NOW = 1_800_000_000.0
KNOWN = {"quality": re.compile(r"quality\((\d+)\)"), "max_age": re.compile(r"max_age\((\d+)\)"),
         "blur": re.compile(r"blur\((\d+)(?:,(\d+))?\)"), "format": re.compile(r"format\((\w+)\)")}


def settings(**overrides) -> Settings:  # noqa: ANN003
    defaults = {"security_key": KEY, "allow_unsafe_url": False, "auto_avif": True, "auto_webp": True}
    return Settings(**{**defaults, **overrides})


def path(image: str = "images/a.jpg", **options) -> str:  # noqa: ANN003
    return build_url(image, key=KEY, **options)


def refusal(url: str, accept: str = "", **overrides) -> Refusal:  # noqa: ANN003
    with pytest.raises(Refusal) as caught:
        decide(url, accept, settings(**overrides), NOW, KNOWN)
    return caught.value


def test_a_good_link_is_decided_without_io() -> None:
    decision = decide(path(width=300, height=200, expires_at=int(NOW) + 60), "image/webp", settings(), NOW, KNOWN)
    assert decision.source == Source("images", "a.jpg")
    assert decision.format == "webp" and decision.expires_at == int(NOW) + 60
    assert decision.canonical == "300x200/images/a.jpg"  # expires() is not part of the identity
    assert decision.derived_key.startswith("images/a.jpg/") and decision.derived_key.endswith(".webp")
    assert not decision.unsafe


@pytest.mark.parametrize(("accept", "expected"), [
    ("image/avif,image/webp,*/*", "avif"), ("image/webp,*/*", "webp"), ("image/jpeg", "auto"), ("", "auto")])
def test_format_follows_accept_and_names_the_result(accept: str, expected: str) -> None:
    decision = decide(path(width=10, height=10), accept, settings(), NOW, KNOWN)
    assert decision.format == expected and decision.derived_key.endswith(f".{expected}")
    assert varies(decision, settings())


def test_an_explicit_format_wins_and_does_not_vary() -> None:
    decision = decide(path(width=10, height=10, filters="format(png)"), "image/avif", settings(), NOW, KNOWN)
    assert decision.format == "png" and not varies(decision, settings())


def test_negotiation_can_be_turned_off() -> None:
    off = settings(auto_avif=False, auto_webp=False)
    decision = decide(path(width=10, height=10), "image/avif,image/webp", off, NOW, KNOWN)
    assert decision.format == "auto" and not varies(decision, off)


@pytest.mark.parametrize(("url", "status", "reason"), [
    (path(width=10).replace(path(width=10).split("/")[1], "x" * 28), 403, "bad_signature"),
    (path(width=10, expires_at=int(NOW) - 1), 410, "expired"),
    ("/unsafe/10x10/images/a.jpg", 403, "unsafe_not_allowed"),
    ("/nothing", 400, "malformed"),
    (path(width=10, filters="blur(150)"), 400, "too_costly"),
    (path(width=10, filters="Expires(1)"), 400, "malformed"),
    (path("other/a.jpg", width=10), 404, "not_found"),
    (path("images/a//b.jpg", width=10), 400, "bad_source"),
    (path("images/../secret.jpg", width=10), 400, "bad_source"),
])
def test_refusals_carry_status_reason_and_fixed_public_words(url: str, status: int, reason: str) -> None:
    refused = refusal(url)
    assert (refused.status, refused.reason) == (status, reason)
    assert refused.public == public_text(status, reason) and refused.public.startswith(f"{status} ")
    assert "images" not in refused.public and "a.jpg" not in refused.public


def test_private_mode_and_link_lifetime() -> None:
    assert refusal(path(width=10), require_expires=True).reason == "expiry_required"
    far = path(width=10, expires_at=int(NOW) + 7200)
    assert refusal(far, max_link_lifetime=3600).reason == "lifetime_too_long"


def test_only_presets() -> None:
    known = presets.load(None)
    only = settings(only_presets=True, presets=known)
    assert decide(path(params=presets.for_image(known["thumb"], "images/a.jpg")), "", only, NOW, KNOWN)
    assert refusal(path(width=123, height=45), only_presets=True, presets=known).reason == "not_a_preset"


def test_fixed_bucket_and_root_path() -> None:
    fixed = settings(allowed_buckets=(), bucket="photos", loader_root_path="originals")
    decision = decide(path("dir/a.jpg", width=10), "", fixed, NOW, KNOWN)
    assert decision.source == Source("photos", "originals/dir/a.jpg")


def decision(**options) -> Decision:  # noqa: ANN003
    return decide(path(**options), "", settings(), NOW, KNOWN)


@pytest.mark.parametrize(("options", "temporary", "expected"), [
    ({"width": 10}, False, "public, max-age=86400"),
    ({"width": 10, "expires_at": int(NOW) + 120}, False, "private, max-age=120"),
    ({"width": 10, "expires_at": int(NOW) + 10**6}, False, "private, max-age=86400"),
    ({"width": 10, "version": "abc"}, False, "public, max-age=31536000, immutable"),
    ({"width": 10, "version": "abc", "filters": "max_age(60)"}, False, "public, max-age=60"),
    ({"width": 10, "filters": "max_age(999999)"}, False, "public, max-age=86400"),  # never raised
    ({"width": 10}, True, "public, max-age=0"),
    ({"width": 10, "version": "abc"}, True, "public, max-age=0"),
])
def test_cache_control(options: dict, temporary: bool, expected: str) -> None:
    assert cache_control(decision(**options), settings(max_age_temp_image=0), NOW, temporary=temporary) == expected


STORED_AT = datetime.datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=datetime.UTC)


def test_last_modified_is_sent_only_when_configured_in_whole_utc_seconds() -> None:
    assert pipeline_last_modified(STORED_AT, send=False) is None
    assert pipeline_last_modified(None, send=True) is None
    naive = STORED_AT.replace(tzinfo=None)
    assert pipeline_last_modified(naive, send=True) == STORED_AT.replace(microsecond=0)


def pipeline_last_modified(stored_at: datetime.datetime | None, *, send: bool) -> datetime.datetime | None:
    from thumbor_plugins.pipeline import last_modified

    return last_modified(stored_at, settings(send_if_modified_last_modified_headers=send))


@pytest.mark.parametrize(("headers", "expected"), [
    ({"If-Modified-Since": "Fri, 02 Jan 2026 03:04:05 GMT"}, True),
    ({"If-Modified-Since": "Fri, 02 Jan 2026 03:04:04 GMT"}, False),
    ({"If-Modified-Since": "Friday, 02-Jan-26 03:04:05 GMT"}, True),  # RFC 850: Thumbor's own hit path failed on it
    ({"If-Modified-Since": "yesterday"}, False),  # unparsable: ignored
    ({"If-Modified-Since": "Fri, 02 Jan 2026 03:04:05 GMT", "If-None-Match": '"x"'}, False),  # the ETag decides
    ({}, False),
])
def test_not_modified(headers: dict[str, str], expected: bool) -> None:
    from thumbor_plugins.pipeline import not_modified

    assert not_modified(STORED_AT.replace(microsecond=0), headers) is expected


def test_the_pipeline_and_its_settings_import_neither_thumbor_nor_tornado() -> None:
    code = ("import sys, thumbor_plugins.pipeline, thumbor_plugins.settings; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'thumbor', 'tornado', 'botocore', 'aiobotocore'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_public_api_is_pinned() -> None:
    from thumbor_plugins import pipeline, settings

    assert pipeline.__all__ == ["ERROR_TEXT", "REASON_TEXT", "Decision", "Refusal", "cache_control", "decide",
                                "last_modified", "not_modified", "public_text", "varies"]
    assert settings.__all__ == ["DEFAULT_KEYS", "MIN_KEY_LENGTH", "SEED_ALIASES", "SettingError", "Settings",
                                "parse_flag", "settings_of", "split_names"]

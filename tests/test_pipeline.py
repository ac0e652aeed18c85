"""The pure request pipeline (thumbor_plugins/pipeline.py), without Thumbor, tornado or S3: every
decision and every refusal the image handler relies on, and the cache policy."""

from __future__ import annotations

import re

import pytest

from thumbor_plugins import presets
from thumbor_plugins.pipeline import Decision, Refusal, Settings, cache_control, decide, public_text, varies
from thumbor_plugins.sources import Source
from thumbor_plugins.urls import Signer, build_url

KEY = "pipeline-test-key-0123456789abcdef"
NOW = 1_800_000_000.0
KNOWN = {"quality": re.compile(r"quality\((\d+)\)"), "max_age": re.compile(r"max_age\((\d+)\)"),
         "blur": re.compile(r"blur\((\d+)(?:,(\d+))?\)"), "format": re.compile(r"format\((\w+)\)")}


def settings(**overrides) -> Settings:  # noqa: ANN003
    return Settings(**{"signer": Signer([KEY]), "known_filters": KNOWN, "max_filters": 10, **overrides})


def path(image: str = "images/a.jpg", **options) -> str:  # noqa: ANN003
    return build_url(image, key=KEY, **options)


def refusal(url: str, accept: str = "", **overrides) -> Refusal:  # noqa: ANN003
    with pytest.raises(Refusal) as caught:
        decide(url, accept, settings(**overrides), NOW)
    return caught.value


def test_a_good_link_is_decided_without_io() -> None:
    decision = decide(path(width=300, height=200, expires_at=int(NOW) + 60), "image/webp", settings(), NOW)
    assert decision.source == Source("images", "a.jpg")
    assert decision.format == "webp" and decision.expires_at == int(NOW) + 60
    assert decision.canonical == "300x200/images/a.jpg"  # expires() is not part of the identity
    assert decision.derived_key.startswith("images/a.jpg/") and decision.derived_key.endswith(".webp")
    assert not decision.unsafe


@pytest.mark.parametrize(("accept", "expected"), [
    ("image/avif,image/webp,*/*", "avif"), ("image/webp,*/*", "webp"), ("image/jpeg", "auto"), ("", "auto")])
def test_format_follows_accept_and_names_the_result(accept: str, expected: str) -> None:
    decision = decide(path(width=10, height=10), accept, settings(), NOW)
    assert decision.format == expected and decision.derived_key.endswith(f".{expected}")
    assert varies(decision, settings())


def test_an_explicit_format_wins_and_does_not_vary() -> None:
    decision = decide(path(width=10, height=10, filters="format(png)"), "image/avif", settings(), NOW)
    assert decision.format == "png" and not varies(decision, settings())


def test_negotiation_can_be_turned_off() -> None:
    off = settings(auto_avif=False, auto_webp=False)
    decision = decide(path(width=10, height=10), "image/avif,image/webp", off, NOW)
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
    assert refusal(far, max_lifetime=3600).reason == "lifetime_too_long"


def test_only_presets() -> None:
    known = presets.load(None)
    only = settings(only_presets=known)
    assert decide(path(params=presets.for_image(known["thumb"], "images/a.jpg")), "", only, NOW)
    assert refusal(path(width=123, height=45), only_presets=known).reason == "not_a_preset"


def test_fixed_bucket_and_root_path() -> None:
    fixed = settings(allowed_buckets=("photos",), fixed_bucket="photos", root_path="originals")
    decision = decide(path("dir/a.jpg", width=10), "", fixed, NOW)
    assert decision.source == Source("photos", "originals/dir/a.jpg")


def decision(**options) -> Decision:  # noqa: ANN003
    return decide(path(**options), "", settings(), NOW)


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
    assert cache_control(decision(**options), settings(max_age_temp=0), NOW, temporary=temporary) == expected

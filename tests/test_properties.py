"""Properties over generated inputs (hypothesis), for the pure parts the security rests on:
the URL grammar round-trips, no single-byte change survives the signature, source keys never
leave their bucket, and a purge never names another original's variants."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thumbor_plugins.derived import FORMATS, derived_key, is_variant
from thumbor_plugins.sources import Source, SourceError, locate
from thumbor_plugins.urls import Params, Signer, UrlError, generate, parse, verify_request
from thumbor_plugins.urls.params import Filter

KEY = "a-property-test-key-of-32-chars!!"
ALLOWED = ("images", "photos")
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# a key as it appears in a URL: percent-encoded UTF-8 segments, never an option word first (a
# real image path starts with its bucket, which never is one)
_SEGMENT = st.text(string.ascii_letters + string.digits + "-_.~%20+", min_size=1, max_size=12).filter(
    lambda s: s not in (".", ".."))
_IMAGE = st.builds(lambda bucket, segments: "/".join([bucket, *segments]),
                   st.sampled_from(ALLOWED), st.lists(_SEGMENT, min_size=1, max_size=4))
_SIZE = st.one_of(st.none(), st.integers(0, 5000), st.just("orig"))
_ARGS = st.text(string.ascii_letters + string.digits + ",.|-", max_size=12)
_FILTER = st.builds(Filter, st.sampled_from(["quality", "blur", "fill", "grayscale", "round_corner", "max_age"]), _ARGS)


@st.composite
def params(draw: st.DrawFn) -> Params:
    filters = draw(st.lists(_FILTER, max_size=3))
    if draw(st.booleans()):
        filters.append(Filter("expires", str(draw(st.integers(0, 10**11)))))
    if draw(st.booleans()):
        token = draw(st.text(string.ascii_letters + string.digits + "._~-", min_size=1, max_size=8))
        filters.append(Filter("v", token))
    if draw(st.booleans()):
        filters.append(Filter("format", draw(st.sampled_from(["webp", "avif", "jpeg", "png"]))))
    crop = draw(st.one_of(st.none(), st.tuples(*[st.integers(0, 9999)] * 4)))
    return Params(
        image=draw(_IMAGE),
        debug=draw(st.booleans()),
        meta=draw(st.booleans()),
        trim=draw(st.sampled_from([None, "trim", "trim:top-left", "trim:bottom-right:10", "trim:5"])),
        crop=crop,
        fit_in=draw(st.sampled_from([None, "fit-in", "adaptive-fit-in", "full-fit-in", "adaptive-full-fit-in"])),
        width=draw(_SIZE),
        height=draw(_SIZE),
        flip_horizontal=draw(st.booleans()),
        flip_vertical=draw(st.booleans()),
        halign=draw(st.sampled_from([None, "left", "right", "center"])),
        valign=draw(st.sampled_from([None, "top", "bottom", "middle"])),
        smart=draw(st.booleans()),
        filters=tuple(filters),
    )


@PROPERTY
@given(params())
def test_parse_inverts_generate_for_any_params(p: Params) -> None:
    assert parse(generate(p)) == p


@PROPERTY
@given(params(), st.data())
def test_any_single_byte_change_to_a_signed_url_is_rejected(p: Params, data: st.DataObject) -> None:
    signer = Signer([KEY])
    path = generate(p)
    url = f"/{signer.sign(path)}/{path}"
    position = data.draw(st.integers(1, len(url) - 1))  # every byte after the leading slash
    replacement = data.draw(st.sampled_from(string.printable.strip()).filter(lambda c: c != url[position]))
    tampered = url[:position] + replacement + url[position + 1:]
    with pytest.raises(UrlError):
        verify_request(tampered, signer=signer, now=0)


@PROPERTY
@given(st.text(max_size=40))
def test_a_source_key_never_leaves_its_bucket(image: str) -> None:
    try:
        source = locate(image, allowed_buckets=ALLOWED)
    except SourceError as error:
        assert error.status in (400, 404)
        return
    assert source.bucket in ALLOWED
    segments = source.key.split("/")
    assert all(segment not in ("", ".", "..") for segment in segments)
    assert not any(char in source.key for char in "\x00\r\n")


_KEY = st.lists(st.text(string.ascii_lowercase + "./ -", min_size=1, max_size=6).filter(
    lambda s: s.strip("/") == s and "//" not in s), min_size=1, max_size=3).map("/".join)


@PROPERTY
@given(_KEY, _KEY, st.text(max_size=30), st.sampled_from(FORMATS))
def test_a_purge_never_covers_another_originals_variants(a: str, b: str, canonical: str, fmt: str) -> None:
    mine, other = Source("images", a), Source("images", b)
    key = derived_key(other, canonical, fmt)
    assert is_variant(other, key)
    assert is_variant(mine, key) is (mine == other)

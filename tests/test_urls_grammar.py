"""Thumbor's grammar: every case must parse to its Params AND generate back to the same path."""

import pytest
from libthumbor.url import Url

from thumbor_plugins.urls import Filter, MalformedUrl, Params, generate, parse, split_signed

F = Filter
ROUND_TRIP = [
    ("images/a.jpg", Params("images/a.jpg")),
    ("debug/images/a.jpg", Params("images/a.jpg", debug=True)),
    ("meta/images/a.jpg", Params("images/a.jpg", meta=True)),
    ("debug/meta/a.jpg", Params("a.jpg", debug=True, meta=True)),
    ("trim/a.jpg", Params("a.jpg", trim="trim")),
    ("trim:top-left/a.jpg", Params("a.jpg", trim="trim:top-left")),
    ("trim:bottom-right:10/a.jpg", Params("a.jpg", trim="trim:bottom-right:10")),
    ("trim:25/a.jpg", Params("a.jpg", trim="trim:25")),
    ("10x20:300x400/a.jpg", Params("a.jpg", crop=(10, 20, 300, 400))),
    ("0x0:0x0/a.jpg", Params("a.jpg", crop=(0, 0, 0, 0))),
    ("fit-in/300x200/a.jpg", Params("a.jpg", fit_in="fit-in", width=300, height=200)),
    ("adaptive-fit-in/300x200/a.jpg", Params("a.jpg", fit_in="adaptive-fit-in", width=300, height=200)),
    ("full-fit-in/300x200/a.jpg", Params("a.jpg", fit_in="full-fit-in", width=300, height=200)),
    ("adaptive-full-fit-in/300x/a.jpg", Params("a.jpg", fit_in="adaptive-full-fit-in", width=300)),
    ("300x200/a.jpg", Params("a.jpg", width=300, height=200)),
    ("300x/a.jpg", Params("a.jpg", width=300)),
    ("x200/a.jpg", Params("a.jpg", height=200)),
    ("0x0/a.jpg", Params("a.jpg", width=0, height=0)),
    ("-300x-200/a.jpg", Params("a.jpg", width=300, height=200, flip_horizontal=True, flip_vertical=True)),
    ("-0x-0/a.jpg", Params("a.jpg", width=0, height=0, flip_horizontal=True, flip_vertical=True)),
    ("-x-/a.jpg", Params("a.jpg", flip_horizontal=True, flip_vertical=True)),
    ("300x-200/a.jpg", Params("a.jpg", width=300, height=200, flip_vertical=True)),
    ("origx100/a.jpg", Params("a.jpg", width="orig", height=100)),
    ("-origx-orig/a.jpg", Params("a.jpg", width="orig", height="orig", flip_horizontal=True, flip_vertical=True)),
    ("left/a.jpg", Params("a.jpg", halign="left")),
    ("center/middle/a.jpg", Params("a.jpg", halign="center", valign="middle")),
    ("right/bottom/a.jpg", Params("a.jpg", halign="right", valign="bottom")),
    ("top/a.jpg", Params("a.jpg", valign="top")),
    ("smart/a.jpg", Params("a.jpg", smart=True)),
    ("300x200/smart/images/a.jpg", Params("images/a.jpg", width=300, height=200, smart=True)),
    ("filters:quality(80)/a.jpg", Params("a.jpg", filters=(F("quality", "80"),))),
    ("filters:no_upscale():strip_icc()/a.jpg", Params("a.jpg", filters=(F("no_upscale"), F("strip_icc")))),
    ("filters:fill(ff0000):watermark(img.png,10,10,50)/a.jpg",
     Params("a.jpg", filters=(F("fill", "ff0000"), F("watermark", "img.png,10,10,50")))),
    ("filters:watermark(logos/w.png,-10,-10,50):round_corner(20|20,0,0,0)/a.jpg",
     Params("a.jpg", filters=(F("watermark", "logos/w.png,-10,-10,50"), F("round_corner", "20|20,0,0,0")))),
    ("filters:blur(fill(1,2)):x(a:b):y(http://h/p.png)/a.jpg",
     Params("a.jpg", filters=(F("blur", "fill(1,2)"), F("x", "a:b"), F("y", "http://h/p.png")))),
    ("filters:quality(80):expires(1767225600):v(3f2a)/a.jpg",
     Params("a.jpg", filters=(F("quality", "80"), F("expires", "1767225600"), F("v", "3f2a")))),
    ("filters:quality(80)/dir)/b.jpg", Params("dir)/b.jpg", filters=(F("quality", "80"),))),
    ("images/a%20b%2B1.jpg", Params("images/a%20b%2B1.jpg")),
    ("images/%E3%83%97%E3%83%AD%20%E7%94%BB%E5%83%8F.png",
     Params("images/%E3%83%97%E3%83%AD%20%E7%94%BB%E5%83%8F.png")),
    ("bucket/deep/dir/a(1).jpg", Params("bucket/deep/dir/a(1).jpg")),
    ("%73mart/a.jpg", Params("%73mart/a.jpg")),
    ("debug/meta/trim:top-left:10/10x20:300x400/adaptive-full-fit-in/-300x-200/left/top/smart/"
     "filters:quality(80):expires(1767225600)/bucket/dir/a%20b.jpg",
     Params("bucket/dir/a%20b.jpg", debug=True, meta=True, trim="trim:top-left:10", crop=(10, 20, 300, 400),
            fit_in="adaptive-full-fit-in", width=300, height=200, flip_horizontal=True, flip_vertical=True,
            halign="left", valign="top", smart=True, filters=(F("quality", "80"), F("expires", "1767225600")))),
]


@pytest.mark.parametrize(("path", "params"), ROUND_TRIP, ids=[p for p, _ in ROUND_TRIP])
def test_round_trip(path, params):
    assert parse(path) == params
    assert generate(params) == path


@pytest.mark.parametrize(("path", "params"), ROUND_TRIP, ids=[p for p, _ in ROUND_TRIP])
def test_splits_the_path_like_thumbor(path, params):
    """Thumbor routes with libthumbor's regex: we must see the same image and filters it does."""
    thumbor = Url.parse_decrypted(path)
    assert thumbor["image"] == params.image
    assert thumbor["filters"] == ":".join(str(f) for f in params.filters)
    assert thumbor["smart"] == params.smart and thumbor["trim"] == params.trim


@pytest.mark.parametrize("path", [
    "",
    "images/a\n.jpg",
    "filters:a(1)b(2)/x.jpg",
    "filters:a((1)/x.jpg",
    "filters:a(1)::b(2)/x.jpg",
    "filters:9bad(1)/x.jpg",
    "filters:expires(1):expires(2)/x.jpg",
    "filters:expires(abc)/x.jpg",
    "filters:expires(-1)/x.jpg",
    "filters:expires()/x.jpg",
    "filters:expires(\u0661\u0662\u0663)/x.jpg",
    "filters:v(1):v(2)/x.jpg",
    "filters:v(a,b)/x.jpg",
])
def test_should_reject_malformed_path(path):
    with pytest.raises(MalformedUrl) as exc:
        parse(path)
    assert exc.value.status == 400


def test_non_canonical_spellings_parse_to_canonical_params():
    assert generate(parse("x/a.jpg")) == "a.jpg"
    assert generate(parse("0300x200/a.jpg")) == "300x200/a.jpg"


def test_params_properties():
    params = parse("300x200/filters:quality(80):format(png):expires(1767225600):v(3f2a):format(webp)/a.jpg")
    assert params.expires_at == 1767225600
    assert params.version == "3f2a"
    assert params.format == "webp"
    assert params.thumbor_filters() == "quality(80):format(png):format(webp)"
    assert params.without_expires() == parse("300x200/filters:quality(80):format(png):v(3f2a):format(webp)/a.jpg")
    plain = parse("a.jpg")
    assert plain.expires_at is None and plain.version is None and plain.format is None


def test_params_accepts_a_list_of_filters_and_stays_hashable():
    params = Params("a.jpg", filters=[F("quality", "80")])
    assert params.filters == (F("quality", "80"),)
    assert hash(params) == hash(parse("filters:quality(80)/a.jpg"))


@pytest.mark.parametrize(("raw", "expected"), [
    ("/sig/300x200/a.jpg", ("sig", "300x200/a.jpg")),
    ("/unsafe/a.jpg", ("unsafe", "a.jpg")),
    ("/s/a%2Fb//c", ("s", "a%2Fb//c")),
])
def test_split_signed(raw, expected):
    assert split_signed(raw) == expected


@pytest.mark.parametrize("raw", ["", "/", "//a.jpg", "/sig", "/sig/", "sig/a.jpg"])
def test_split_signed_rejects_other_shapes(raw):
    with pytest.raises(MalformedUrl):
        split_signed(raw)

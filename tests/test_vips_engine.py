"""The libvips engine (thumbor_plugins.vips_engine): the same pictures as Thumbor's PIL engine,
through Thumbor's engine interface, and Pillow wherever libvips does not take the step.

Unit tests on the engine object; the whole suite's integration tests run through it too (it is
the shipped ENGINE). Speed is measured by bench/compare.py, not here."""

from __future__ import annotations

import inspect
import io
import struct

import numpy as np
import pytest
from PIL import Image
from thumbor.config import Config
from thumbor.context import Context, RequestParameters
from thumbor.engines.pil import Engine as ThumborPilEngine
from thumbor.importer import Importer

import thumbor_plugins.config  # noqa: F401 - our settings
from thumbor_plugins import engine as pil_engine
from thumbor_plugins import vips_engine
from thumbor_plugins.vips_engine import Engine

from .conftest import FIXTURES

PORTRAIT = FIXTURES / "800px-Guido-portrait-2014.jpg"


def make_context(**settings) -> Context:  # noqa: ANN003
    config = Config(**settings)
    importer = Importer(config)
    importer.import_modules()
    return Context(config=config, importer=importer)


def load(engine_class: type, buffer: bytes, extension: str, **request) -> ThumborPilEngine:  # noqa: ANN003
    context = make_context()
    engine = engine_class(context)
    context.request = RequestParameters(**request)
    context.request.engine = engine
    engine.load(buffer, extension)
    return engine


def encode(image: Image.Image, fmt: str, **options) -> bytes:  # noqa: ANN003
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def pixels(body: bytes, mode: str = "RGB") -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)).convert(mode), dtype=np.float64)


def psnr(a: bytes, b: bytes, mode: str = "RGB") -> float:
    x, y = pixels(a, mode), pixels(b, mode)
    assert x.shape == y.shape
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def render(engine_class: type, buffer: bytes, extension: str, out: str, steps=()) -> bytes:  # noqa: ANN001
    engine = load(engine_class, buffer, extension)
    engine.reorientate()
    for name, *args in steps:
        getattr(engine, name)(*args)
    return engine.read(out, 90)


# --- the interface is covered: a Thumbor upgrade that adds an engine method fails here ----------

#: PIL-engine methods that touch no pixels (or make new Pillow images): safe on either side
NO_PIXELS = {
    "__init__", "gen_image", "get_resize_filter", "extract_copyright_from_exif", "avif_enabled",
    "heif_enabled", "strip_icc", "strip_exif", "get_proportional_width", "get_proportional_height",
    "_original_proportions",
}


def test_every_pil_engine_method_is_native_or_converts_to_pillow_first() -> None:
    own = set(vars(Engine))
    for cls in (ThumborPilEngine, pil_engine.Engine):
        for name, member in vars(cls).items():
            if not (inspect.isfunction(member) or isinstance(member, property)):
                continue
            assert name in own or name in NO_PIXELS, (
                f"{cls.__module__}.{name} is neither implemented by the libvips engine nor listed "
                "in vips_engine.PIL_STEPS: it would get a libvips image"
            )
    assert set(vips_engine.PIL_STEPS) <= own


# --- same pictures as the PIL engine -------------------------------------------------------------

GEOMETRY = [
    pytest.param([("resize", 320, 400)], id="resize"),
    pytest.param([("crop", 100, 80, 700, 500), ("resize", 300, 200)], id="crop-resize"),
    pytest.param([("resize", 200, 250), ("flip_horizontally",), ("flip_vertically",)], id="flips"),
    pytest.param([("rotate", 90), ("resize", 250, 200)], id="rotate-90"),
    pytest.param([("rotate", 270), ("rotate", 180)], id="rotate-270-180"),
]


@pytest.mark.parametrize("steps", GEOMETRY)
@pytest.mark.parametrize("source, extension", [
    pytest.param(lambda: PORTRAIT.read_bytes(), ".jpg", id="jpeg"),
    pytest.param(lambda: encode(Image.open(PORTRAIT), "PNG"), ".png", id="png"),
    pytest.param(lambda: encode(Image.open(PORTRAIT), "WEBP", quality=95), ".webp", id="webp"),
])
def test_geometry_matches_the_pil_engine(source, extension, steps) -> None:  # noqa: ANN001
    buffer = source()
    ours = render(Engine, buffer, extension, ".png", steps)
    theirs = render(ThumborPilEngine, buffer, extension, ".png", steps)
    assert Image.open(io.BytesIO(ours)).size == Image.open(io.BytesIO(theirs)).size
    assert psnr(ours, theirs) > 33  # Lanczos-3 both; rounding at the edges differs


def test_jpeg_is_decoded_at_a_reduced_scale_and_keeps_its_proportions() -> None:
    big = encode(Image.open(PORTRAIT).convert("RGB").resize((4000, 4500)), "JPEG", quality=92)
    engine = load(Engine, big, ".jpg", width=300, height=0)
    assert engine.on_vips
    assert engine.size == (500, 562)  # 1/8, rounded down
    assert engine.get_proportional_height(300) == 338  # 300 * 4500 / 4000, not from 500x562
    full = load(Engine, big, ".jpg", width=0, height=0)
    assert full.size == (4000, 4500)


def turned_jpeg(orientation: int | None) -> bytes:
    """A 4800x3200 photo; with EXIF 6 stored turned (3200x4800), as a phone stores it."""
    image = Image.open(PORTRAIT).convert("RGB").resize((4800, 3200))
    if orientation is None:
        return encode(image, "JPEG", quality=85)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = image.transpose(Image.Transpose.ROTATE_90) if orientation == 6 else image
    return encode(stored, "JPEG", quality=85, exif=exif.tobytes())


@pytest.mark.parametrize("engine_class", [Engine, pil_engine.Engine])
@pytest.mark.parametrize("orientation, respect, decoded", [
    (None, True, (600, 400)),    # no EXIF: a 512x320 crop covers at 1/8
    (1, True, (600, 400)),
    (6, True, (400, 600)),       # stored turned: still 1/8, its sides read the right way round
    (6, False, (800, 1200)),     # not turned back: 512 of the stored 3200 wide needs 1/4
])
def test_a_fill_crop_is_decoded_at_its_cover_scale_once_the_orientation_is_known(
        engine_class, orientation, respect, decoded) -> None:  # noqa: ANN001
    context = make_context(RESPECT_ORIENTATION=respect)
    engine = engine_class(context)
    context.request = RequestParameters(width=512, height=320)
    context.request.engine = engine
    engine.load(turned_jpeg(orientation), ".jpg")
    assert engine.size == decoded


def test_webp_is_decoded_at_a_reduced_scale() -> None:
    big = encode(Image.open(PORTRAIT).convert("RGB").resize((3000, 3000)), "WEBP", quality=80)
    engine = load(Engine, big, ".webp", width=300, height=300)
    assert engine.on_vips and engine.size == (300, 300)


def test_a_watermark_loaded_by_the_same_engine_class_is_not_shrunk() -> None:
    big = encode(Image.new("RGB", (4000, 3000), "red"), "JPEG")
    context = make_context()
    context.request = RequestParameters(width=100, height=100)
    context.request.engine = Engine(context)  # the request's own engine
    watermark = Engine(context)
    watermark.load(big, ".jpg")
    assert watermark.size == (4000, 3000)


def exif_jpeg(orientation: int) -> bytes:
    image = Image.open(PORTRAIT).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", quality=92, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied_as_the_pil_engine_does(orientation) -> None:  # noqa: ANN001
    buffer = exif_jpeg(orientation)
    ours = render(Engine, buffer, ".jpg", ".png", [("resize", 300, 300)])
    theirs = render(ThumborPilEngine, buffer, ".jpg", ".png", [("resize", 300, 300)])
    assert psnr(ours, theirs) > 33


def test_a_pngs_exif_orientation_is_read_and_applied() -> None:
    """libvips gives a PNG's eXIf chunk as bare TIFF; Thumbor reads EXIF after an ``Exif`` header
    and logged "not a TIFF file", leaving such PNGs unrotated."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = encode(Image.new("RGB", (200, 100), (200, 30, 30)), "PNG", exif=exif.tobytes())
    engine = load(Engine, buffer, ".png")
    assert engine.exif.startswith(b"Exif\x00\x00") and engine.get_orientation() == 6
    engine.reorientate()
    assert engine.size == (100, 200)


def test_exif_is_stripped_and_icc_kept_as_thumbor_does() -> None:
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = Image.open(PORTRAIT).convert("RGB")
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    buffer = encode(image, "JPEG", icc_profile=icc, exif=exif.tobytes())
    engine = load(Engine, buffer, ".jpg")
    for out in (".jpg", ".png", ".webp", ".avif"):
        result = Image.open(io.BytesIO(engine.read(out, 80)))
        assert result.info.get("icc_profile") == icc, out
        assert not result.getexif(), out
    engine.strip_icc()
    assert "icc_profile" not in Image.open(io.BytesIO(engine.read(".jpg", 80))).info


def test_alpha_survives_resize_without_dark_fringes() -> None:
    # a white square on transparent black: premultiplied resampling keeps edges white
    image = Image.new("RGBA", (400, 400), (0, 0, 0, 0))
    image.paste((255, 255, 255, 255), (100, 100, 300, 300))
    out = render(Engine, encode(image, "PNG"), ".png", ".png", [("resize", 133, 133)])
    result = np.asarray(Image.open(io.BytesIO(out)).convert("RGBA"))
    visible = result[result[..., 3] > 0]
    assert visible[..., :3].min() >= 250


def test_sixteen_bit_png_comes_out_eight_bit() -> None:
    gradient = np.tile(np.linspace(0, 65535, 300, dtype=np.uint16), (200, 1))
    rgb16 = np.dstack([gradient] * 3)
    header = struct.pack(">IIBBBBB", 300, 200, 16, 2, 0, 0, 0)
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    engine = load(Engine, png, ".png")
    assert engine.on_vips
    result = Image.open(io.BytesIO(engine.read(".png", 80)))
    assert result.mode == "RGB"
    assert np.asarray(result)[0, -1, 0] == 255


def test_palette_png_stays_indexed() -> None:
    image = Image.open(PORTRAIT).convert("RGB").quantize(64)
    engine = load(Engine, encode(image, "PNG"), ".png")
    engine.resize(200, 250)
    assert Image.open(io.BytesIO(engine.read(".png", 80))).mode == "P"


def test_cmyk_jpeg_and_gif_are_left_to_pillow() -> None:
    cmyk = load(Engine, encode(Image.open(PORTRAIT).convert("CMYK"), "JPEG"), ".jpg")
    assert not cmyk.on_vips
    gif = load(Engine, encode(Image.open(PORTRAIT).convert("P"), "GIF"), ".gif")
    assert not gif.on_vips
    assert Image.open(io.BytesIO(cmyk.read(".jpg", 80))).mode == "RGB"


def test_a_pixel_filter_step_moves_the_image_to_pillow_once() -> None:
    engine = load(Engine, PORTRAIT.read_bytes(), ".jpg")
    engine.resize(200, 250)
    mode, data = engine.image_data_as_rgb()
    assert not engine.on_vips and mode == "RGB" and len(data) == 200 * 250 * 3
    engine.set_image_data(bytes(255 - b for b in data))  # an "invert" filter
    engine.resize(100, 125)  # goes on in Pillow
    result = pixels(engine.read(".png", 80))
    assert result.shape == (125, 100, 3)


def test_paste_moves_both_engines_to_pillow() -> None:
    engine = load(Engine, PORTRAIT.read_bytes(), ".jpg")
    mark = load(Engine, encode(Image.new("RGBA", (50, 50), (255, 0, 0, 255)), "PNG"), ".png")
    engine.paste(mark, (10, 10), merge=True)
    result = pixels(engine.read(".png", 80))
    assert tuple(result[20, 20]) == (255, 0, 0)


def test_grayscale_for_the_detectors_leaves_the_image_on_libvips() -> None:
    engine = load(Engine, PORTRAIT.read_bytes(), ".jpg")
    gray = np.array(engine.convert_to_grayscale(update_image=False, alpha=False))
    assert engine.on_vips
    reference = np.asarray(Image.open(PORTRAIT).convert("L"), dtype=np.float64)
    assert gray.shape == reference.shape
    assert np.abs(gray.astype(np.float64) - reference).mean() < 3


def test_transparency_check() -> None:
    opaque = Image.new("RGBA", (20, 20), (1, 2, 3, 255))
    holes = opaque.copy()
    holes.putpixel((3, 3), (0, 0, 0, 10))
    assert not load(Engine, encode(opaque, "PNG"), ".png").has_transparency()
    assert load(Engine, encode(holes, "PNG"), ".png").has_transparency()


@pytest.mark.parametrize("out, fmt", [(".jpg", "JPEG"), (".png", "PNG"), (".webp", "WEBP"), (".avif", "AVIF")])
def test_every_output_format_is_encoded(out, fmt) -> None:  # noqa: ANN001
    engine = load(Engine, PORTRAIT.read_bytes(), ".jpg")
    engine.resize(160, 200)
    body = engine.read(out, 80)
    result = Image.open(io.BytesIO(body))
    assert result.format == fmt and result.size == (160, 200)
    assert engine.extension == out


@pytest.mark.parametrize("request_options, streams", [
    ({"width": 300, "height": 200, "fit_in": True}, True),
    ({"width": 300, "height": 200, "filters": "quality(80):format(webp)"}, True),
    ({"width": 300, "height": 200, "smart": True}, False),  # detectors read the pixels first
    ({"width": 300, "height": 200, "vertical_flip": True}, False),
    ({"width": 300, "height": 200, "filters": "blur(2)"}, False),
    ({"width": 300, "height": 200, "filters": "brightness(10):contrast(5):rgb(1,2,3):saturation(2):grayscale()"}, True),
    ({"width": 300, "height": 200, "meta": True}, False),
])
def test_plain_resizes_stream_the_original(request_options, streams) -> None:  # noqa: ANN001
    engine = load(Engine, encode(Image.open(PORTRAIT), "PNG"), ".png", **request_options)
    assert engine._sequential is streams


def test_a_streamed_original_can_still_be_rotated_and_encoded_twice() -> None:
    buffer = encode(Image.open(PORTRAIT), "PNG")
    engine = load(Engine, buffer, ".png", width=300, height=200, fit_in=True)
    assert engine._sequential
    engine.resize(400, 500)
    engine.rotate(90)  # out of order: computed once first
    first, second = engine.read(".png", 80), engine.read(".jpg", 80)
    reference = load(ThumborPilEngine, buffer, ".png")
    reference.resize(400, 500)
    reference.rotate(90)
    assert psnr(first, reference.read(".png", 80)) > 33
    assert Image.open(io.BytesIO(second)).size == (500, 400)


def test_a_resize_of_a_resize_resamples_once_from_the_source() -> None:
    engine = load(Engine, encode(Image.open(PORTRAIT), "PNG"), ".png")
    source = engine.image
    engine.resize(400, 266)  # Thumbor's MAX_WIDTH normalisation, say
    assert engine.size == (400, 266)
    engine.resize(200, 133)
    assert engine._pending == (source, (200, 133))  # the first resize was never built
    direct = load(Engine, encode(Image.open(PORTRAIT), "PNG"), ".png")
    direct.resize(200, 133)
    assert psnr(engine.read(".png", 80), direct.read(".png", 80)) == float("inf")
    engine.crop(0, 0, 100, 100)  # something between: the next resize starts from here
    cropped = engine.image
    engine.resize(50, 50)
    assert engine._pending == (cropped, (50, 50))
    assert engine.image.width == engine.image.height == 50 and engine._pending is None


def test_a_resize_is_built_when_the_image_is_needed() -> None:
    engine = load(Engine, encode(Image.open(PORTRAIT), "PNG"), ".png")
    engine.resize(120, 80)
    assert engine.on_vips and engine.size == (120, 80) and engine._pending is not None
    assert (engine.image.width, engine.image.height) == (120, 80)
    engine.resize(120, 80)  # the size it has: nothing to do
    assert engine._pending is None
    other = engine.image.crop(0, 0, 30, 20)
    engine.resize(60, 40)
    engine.image = other  # an assignment replaces what was pending
    assert engine.size == (30, 20) and engine._pending is None


@pytest.mark.parametrize(("radius", "sigma"), [(1, 0), (4, 2), (20, 0), (3, 0.5)])
@pytest.mark.parametrize("alpha", [False, True], ids=["rgb", "rgba"])
def test_blur_on_libvips_makes_thumbors_pixels_and_stays_lazy(radius, sigma, alpha) -> None:  # noqa: ANN001
    """thumbor_plugins.filters.blur: Thumbor's kernel, within 3 levels of Thumbor's pixels; it adds
    to the libvips pipeline (no Pillow, nothing computed on the event loop)."""
    import asyncio

    from thumbor.filters.blur import apply_blur

    from thumbor_plugins.filters.blur import Filter

    if alpha:
        rgba = Image.open(PORTRAIT).convert("RGBA").resize((400, 500))
        rgba.putalpha(Image.linear_gradient("L").resize((400, 500)))
        buffer, extension = encode(rgba, "PNG"), ".png"
    else:
        buffer, extension = PORTRAIT.read_bytes(), ".jpg"
    ours = load(Engine, buffer, extension)
    ours.resize(200, 250)
    assert Filter.pre_compile() == "blur"  # as Thumbor's FiltersFactory does
    blur = Filter(f"blur({radius},{sigma})" if sigma else f"blur({radius})", ours.context)
    blur.engine = ours
    asyncio.run(blur.run())
    assert ours.on_vips
    mode, blurred = ours.image_data_as_rgb()
    theirs = load(Engine, buffer, extension)
    theirs.resize(200, 250)
    their_mode, data = theirs.image_data_as_rgb()
    expected = apply_blur(their_mode, data, theirs.size, radius, sigma)
    assert mode == their_mode
    difference = np.abs(np.frombuffer(blurred, np.uint8).astype(int) - np.frombuffer(expected, np.uint8).astype(int))
    # libvips' fixed-point sums, rounded; Thumbor's are truncated after each pass (a level darker)
    assert difference.max() <= 3 and difference.mean() < 1.3


def test_blurs_of_a_streamed_original_never_read_it_out_of_order() -> None:
    """A convolution reads rows again; through a streamed (sequential) decoder the render's threads
    sometimes asked for a row it had passed: ten blur(20) of a 4000x3000 PNG answered 500 ("vipspng:
    out of order read") in about one render of ten, more with more threads. The streamed image is
    now read through a cache of all of it (Engine._behind_cache). A race, so: many threads, many
    tries. It cannot fail every time without the cache: on this machine it failed 1 of 10 renders of
    the 4000x3000 image, 2 of 20 on a loaded machine, and none of 100 in other runs."""
    from thumbor.filters.blur import generate_1d_matrix

    rng = np.random.default_rng(7)
    noise = encode(Image.fromarray(rng.integers(0, 255, (1800, 1200, 3), dtype=np.uint8)), "PNG", compress_level=1)
    weights, _ = generate_1d_matrix(20, 20)
    before = vips_engine.pyvips.concurrency_get()
    vips_engine.pyvips.concurrency_set(8)
    try:
        for _ in range(8):
            engine = load(Engine, noise, ".png", width=900, height=900, fit_in=True)
            assert engine._sequential  # streamed, as an original over the size cap always is
            engine.resize(1100, 1650)
            for _ in range(10):
                engine.convolve_separable(weights)
            assert engine._sequential  # nothing computed yet: the cache fills during the encode
            assert Image.open(io.BytesIO(engine.read(".jpg", 80))).size == (1100, 1650)
    finally:
        vips_engine.pyvips.concurrency_set(before)


def _image_of_mode(mode: str) -> tuple[bytes, str]:
    """The portrait at 200x250 as an original of ``mode``: RGB (JPEG), RGBA with a gradient of
    alpha (PNG), L (grey JPEG)."""
    portrait = Image.open(PORTRAIT).resize((200, 250))
    if mode == "RGBA":
        rgba = portrait.convert("RGBA")
        rgba.putalpha(Image.linear_gradient("L").resize((200, 250)))
        return encode(rgba, "PNG"), ".png"
    return encode(portrait.convert(mode), "JPEG", quality=95), ".jpg"


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
@pytest.mark.parametrize(("call", "tolerance"), [
    ("brightness(30)", 0), ("brightness(-45)", 0), ("brightness(-1)", 0),
    ("contrast(40)", 0), ("contrast(-33)", 0), ("contrast(-150)", 0),
    ("rgb(10,-23,101)", 0), ("rgb(-3,0,7)", 0),
    ("saturation(1.7)", 1), ("saturation(0.25)", 1), ("saturation(-0.5)", 1),
])
def test_colour_filters_on_libvips_make_thumbors_pixels_and_stay_lazy(call, tolerance, mode) -> None:  # noqa: ANN001
    """thumbor_plugins.filters: Thumbor's brightness, contrast, rgb and saturation, the same pixels
    as Thumbor's C extensions (saturation within a level: its float arithmetic), added to the
    libvips pipeline: no Pillow, nothing computed on the event loop, where Thumbor's held it."""
    import asyncio
    import importlib

    name = call.split("(")[0]
    ours_class = importlib.import_module(f"thumbor_plugins.filters.{name}").Filter
    theirs_class = importlib.import_module(f"thumbor.filters.{name}").Filter
    buffer, extension = _image_of_mode(mode)

    ours = load(Engine, buffer, extension, width=200, height=250, fit_in=True)
    assert ours._sequential  # streamed from the original
    assert ours_class.pre_compile() == name  # as Thumbor's FiltersFactory does
    step = ours_class(call, ours.context)
    step.engine = ours
    asyncio.run(step.run())
    assert ours.on_vips and ours._sequential  # still in libvips, and nothing computed yet

    theirs = load(Engine, buffer, extension)
    theirs.use_pil()
    assert theirs_class.pre_compile() == name
    step = theirs_class(call, theirs.context)
    step.engine = theirs
    asyncio.run(step.run())

    our_mode, our_data = ours.image_data_as_rgb()
    their_mode, their_data = theirs.image_data_as_rgb()
    assert our_mode == their_mode
    difference = np.abs(np.frombuffer(our_data, np.uint8).astype(int) - np.frombuffer(their_data, np.uint8).astype(int))
    assert difference.max() <= tolerance
    assert (difference > 0).mean() < 0.01


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
@pytest.mark.parametrize("alpha", [True, False])
def test_grayscale_on_libvips_is_pillows_luma(mode, alpha) -> None:  # noqa: ANN001
    """Thumbor's grayscale filter calls the engine's convert_to_grayscale: on libvips it is lazy
    and makes Pillow's convert("L") / ("LA") pixels exactly."""
    buffer, extension = _image_of_mode(mode)
    ours = load(Engine, buffer, extension, width=200, height=250, fit_in=True)
    ours.convert_to_grayscale(alpha=alpha)
    assert ours.on_vips and ours._sequential
    theirs = load(Engine, buffer, extension)
    theirs.use_pil()
    expected = theirs.convert_to_grayscale(alpha=alpha)
    got = vips_engine.to_pil(ours._computed())  # the one pass a streamed original allows
    assert got.mode == expected.mode
    assert got.tobytes() == expected.tobytes()
    assert Image.open(io.BytesIO(ours.read(".png", 80))).mode == expected.mode


def test_shipped_filters_are_thumbors_with_ours_in_place() -> None:
    from thumbor.filters import BUILTIN_FILTERS

    from thumbor_plugins.filters import REPLACED, shipped_filters

    shipped = shipped_filters()
    assert len(shipped) == len(BUILTIN_FILTERS)
    assert set(REPLACED) <= set(BUILTIN_FILTERS) and set(REPLACED.values()) <= set(shipped)
    for name in shipped:  # each loads as Thumbor loads FILTERS: a module with a Filter class
        assert hasattr(__import__(name, fromlist=["Filter"]), "Filter")


def test_blur_of_an_image_in_pillow_is_thumbors() -> None:
    import asyncio

    from thumbor_plugins.filters.blur import Filter

    engine = load(Engine, encode(Image.open(PORTRAIT).convert("P"), "GIF"), ".gif")
    assert not engine.on_vips
    before = engine.image.convert("RGB").tobytes()
    assert Filter.pre_compile() == "blur"
    blur = Filter("blur(3)", engine.context)
    blur.engine = engine
    asyncio.run(blur.run())
    assert not engine.on_vips and engine.image.convert("RGB").tobytes() != before

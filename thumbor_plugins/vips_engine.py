"""Thumbor engine on libvips: ``ENGINE = 'thumbor_plugins.vips_engine'`` (the shipped default).

JPEG, PNG and WebP stills are decoded, oriented, cropped, resized, flipped and encoded by libvips
(``pyvips`` with the ``pyvips-binary`` wheel): shrink-on-load for JPEG (1/2-1/8 DCT scale) and
WebP (any scale), libspng for PNG, one decode per render. libvips is lazy: the crop/resize calls
only build a pipeline, and the pixels are computed once, in :meth:`Engine.read`, which Thumbor
runs in its thread pool (``ENGINE_THREADPOOL_SIZE``), where libvips releases the GIL.

Everything else keeps Thumbor's PIL engine (which this class extends, with its own JPEG
shrink-on-load): GIFs and other formats are decoded by Pillow from the start, and any operation
that needs pixels in Python (Thumbor's pixel filters, ``paste`` for watermarks and fills, trim,
``debug``, settings only Pillow implements) converts the image to Pillow at that step and goes on
there. :data:`PIL_STEPS` lists those methods; ``tests/test_vips_engine.py`` checks that every
method of Thumbor's PIL engine is either implemented here or in that list, so a Thumbor upgrade
that adds one fails a test instead of handing a libvips image to Pillow code.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pyvips
from PIL import Image

from . import engine as pil_engine
from . import jpeg_scans, spool
from .settings import settings_of
from .thumbor_adapter import state_of

logger = logging.getLogger("imgstack.engine")

#: libvips keeps recent operations for reuse; a render never repeats one, and the cache would
#: hold decoded images alive between requests
pyvips.cache_set_max(0)

#: source formats libvips decodes here (Thumbor's extension names)
_VIPS_SOURCES = {".jpg", ".jpeg", ".png", ".webp"}
#: output formats libvips encodes here
_VIPS_OUTPUTS = {".jpg", ".jpeg", ".png", ".webp", ".avif"}
#: colour spaces this engine handles itself (CMYK, Lab, ... go to Pillow as before)
_INTERPRETATIONS = {"srgb", "b-w", "rgb16", "grey16"}
_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
#: Thumbor filters that leave the pixels to be read once, in order (output settings, resizing, and
#: the colour filters this engine computes pixel by pixel: thumbor_plugins.filters)
_STREAMING_FILTERS = {
    "quality", "format", "strip_icc", "strip_exif", "no_upscale", "upscale",
    "brightness", "contrast", "rgb", "saturation", "grayscale",
}
_FILTER_NAME = re.compile(r"(\w+)\(")


_niced = threading.local()


#: originals this large leave enough freed decode buffers behind to give them back at once
_HUGE_PIXELS = 40_000_000
#: rows per strip of the whole-image cache in front of a streamed source (Engine._behind_cache)
_CACHE_STRIP = 32


def release_memory() -> None:
    """Give the heap's free pages back to the system. A streamed decode of a huge original frees
    some 200 MB of row buffers that glibc's malloc would otherwise keep for the process's lifetime
    (the worker's memory stayed that much higher); trimming takes about 10 ms. Not glibc: no-op."""
    try:
        _libc().malloc_trim(0)
    except (OSError, AttributeError):
        pass


@functools.cache
def _libc() -> Any:
    import ctypes

    return ctypes.CDLL("libc.so.6")


@functools.cache
def _threads(count: int) -> None:
    """libvips' threads per render (IMGSTACK_VIPS_CONCURRENCY), set once per process."""
    pyvips.concurrency_set(count)


def render_thread_priority(niceness: int) -> None:
    """Lower the scheduling priority of the calling render thread (once per thread), so that the
    event loop's thread — health checks, result-storage hits, events — gets a core at once when it
    needs one, while renders still use every idle cycle. The libvips worker threads a render
    thread starts inherit it. Raising niceness needs no privilege; Linux and macOS only."""
    if niceness <= 0 or getattr(_niced, "done", False) or threading.current_thread() is threading.main_thread():
        return
    _niced.done = True
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError) as error:  # not on this platform: renders just compete
        logger.debug("cannot lower the render thread's priority: %s", error)


def _needs_pil(method: Callable) -> Callable:
    """Wrap a PIL-engine method: the image is converted to Pillow first (once; the engine stays
    on Pillow from then on)."""

    @functools.wraps(method)
    def wrapper(self: Engine, *args: Any, **kwargs: Any) -> Any:
        self.use_pil()
        return method(self, *args, **kwargs)

    return wrapper


def to_pil(image: pyvips.Image) -> Image.Image:
    """The same pixels as an 8-bit Pillow image (L, LA, RGB or RGBA)."""
    image = _eight_bit(image)
    mode = _MODES[image.bands]
    return Image.frombuffer(mode, (image.width, image.height), image.write_to_memory(), "raw", mode, 0, 1)


def _eight_bit(image: pyvips.Image) -> pyvips.Image:
    if image.format == "uchar":
        return image
    return image.colourspace("srgb" if image.bands >= 3 else "b-w").cast("uchar")


def _exif(blob: bytes) -> bytes:
    """EXIF as Thumbor (piexif) reads it: after an ``Exif\\0\\0`` header. libvips gives a
    JPEG's APP1 that way but a PNG's ``eXIf`` chunk (and some WebPs') as the bare TIFF structure,
    which Thumbor refused ("not a TIFF file"), losing the orientation."""
    return blob if blob.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + blob


def _png_is_palette(buffer: bytes) -> bool:
    # IHDR colour type 3 (indexed): Thumbor keeps such PNGs indexed (PILLOW_PRESERVE_INDEXED_MODE)
    return len(buffer) > 25 and buffer[25] == 3


def _jpeg_shrink(size: tuple[int, int], target: tuple[int, int]) -> int:
    """The largest DCT shrink (8, 4, 2) that leaves at least ``target`` (libvips rounds down)."""
    for shrink in (8, 4, 2):
        if size[0] // shrink >= target[0] and size[1] // shrink >= target[1]:
            return shrink
    return 1


def _resampled(source: pyvips.Image, size: tuple[int, int]) -> pyvips.Image:
    """``source`` resampled to exactly ``size`` (lanczos3, as Pillow's ANTIALIAS)."""
    image = source
    alpha = image.hasalpha()
    if alpha:
        # as Pillow does: colours are resampled weighted by their opacity. Back in the source's
        # format before resampling, as libvips' own thumbnail does: its integer resamplers
        # take 8-bit images; a float one cost 1.6x the time for RGBA (docs/decisions.md).
        # Rounded, not truncated: truncating darkened semi-transparent edges by a level or two
        image = image.premultiply().rint().cast(source.format)
    image = image.resize(size[0] / image.width, vscale=size[1] / image.height, kernel="lanczos3")
    if (image.width, image.height) != size:
        image = image.gravity("north-west", *size, extend="copy")  # float rounding: +-1 pixel
    if alpha:
        image = image.unpremultiply().cast(source.format)
    return image


class Engine(pil_engine.Engine):
    """See the module docstring. ``self.image`` is a ``pyvips.Image`` while libvips handles the
    request, a Pillow image after :meth:`use_pil` (or from the start for other formats)."""

    extension: str | None
    #: the libvips image reads its source once, top to bottom (see _streamable)
    _sequential = False
    #: a streamed source is read through a cache of the whole image (see _behind_cache)
    _cached = False
    #: what the libvips image reads its pixels from
    _source: Any = None
    #: the original is huge (its decode's buffers are worth giving back, see release_memory)
    _huge = False
    #: a ``pyvips.Image`` while libvips handles the request, a Pillow image after :meth:`use_pil`
    _image: Any = None
    #: a libvips resize asked for and not built yet: (source, size); see :meth:`resize`
    _pending: tuple[pyvips.Image, tuple[int, int]] | None = None

    @property  # type: ignore[override]
    def image(self) -> Any:
        """The image; a pending resize is built here, when something first needs the image."""
        if self._pending is not None:
            source, size = self._pending
            self._pending = None
            self._image = _resampled(source, size)
        return self._image

    @image.setter
    def image(self, value: Any) -> None:
        self._pending = None
        self._image = value

    @property
    def on_vips(self) -> bool:
        return self._pending is not None or isinstance(self._image, pyvips.Image)

    def use_pil(self) -> None:
        if self.on_vips:
            self.image = to_pil(self._computed())

    def _computed(self) -> pyvips.Image:
        """The image with its pipeline so far computed into memory when it streams from its
        source: the one pass the source allows. Needed before anything reads pixels out of order
        or a second time (a rotation, a detector, a second encode)."""
        if self._sequential:
            self._sequential = False
            self.image = self.image.copy_memory()
        return self.image

    # --- decode -------------------------------------------------------------------------------

    def create_image(self, buffer: bytes) -> Any:
        _threads(settings_of(self.context).vips_concurrency)
        if self.extension not in _VIPS_SOURCES:
            return super().create_image(buffer)
        try:
            image = self._vips_load(buffer)
        except pyvips.Error as error:
            logger.info("libvips cannot read this %s (%s): trying Pillow", self.extension, error)
            image = None
        return image if image is not None else super().create_image(buffer)

    def _vips_load(self, buffer: bytes) -> pyvips.Image | None:
        # the loader's bytes (no copy) or its spooled file; the header is read, not the pixels
        source = spool.vips_source(buffer)
        # the image reads from it lazily, until it is encoded: it lives as long as this engine
        self._source = source
        header = pyvips.Image.new_from_source(source, "")
        fields = set(header.get_fields())
        if header.interpretation not in _INTERPRETATIONS or header.bands not in _MODES:
            return None
        if "n-pages" in fields and header.get("n-pages") > 1:
            return None  # animated WebP: Pillow's frames, as before
        self.icc_profile = header.get("icc-profile-data") if "icc-profile-data" in fields else None
        self.exif = _exif(header.get("exif-data")) if "exif-data" in fields else None
        palette = self.extension == ".png" and _png_is_palette(buffer)
        self.original_mode = "P" if palette else _MODES[header.bands]
        options = self._shrink_options(header)
        # larger than the size cap: read once, top to bottom, through the downscale to the cap
        # (normalize) that comes first, whatever the request; what needs pixels out of order
        # then reads the small downscaled copy (_computed). A huge original is never held whole.
        self._sequential = self._streamable(header) or self._over_cap(header, options)
        self._cached = False
        self._huge = header.width * header.height >= _HUGE_PIXELS
        if self._sequential:
            options["access"] = "sequential"
        if not options:
            return header
        if options.get("shrink") == 8 and settings_of(self.context).jpeg_skip_scans and isinstance(buffer, bytes):
            # a spooled (huge) original stays on disk: reading it here would map it all in
            fewer_scans = jpeg_scans.for_eighth_scale(buffer)
            if fewer_scans is not None:
                source = self._source = pyvips.Source.new_from_memory(fewer_scans)
        image = pyvips.Image.new_from_source(source, "", **options)
        if (image.width, image.height) != (header.width, header.height):
            self._shrunk = ((header.width, header.height), (image.width, image.height))
        self._intermediate_proportions(image)
        return image

    def _intermediate_proportions(self, image: pyvips.Image) -> None:
        """Rendering from a huge original's stored intermediate: sizes derived from one side take
        the original's proportions, as the reduced decode of that original (JPEG, WebP) would."""
        request = getattr(self.context, "request", None)
        if request is None or getattr(request, "engine", None) is not self or self.extension == ".png":
            return
        original = state_of(request).intermediate_of
        if original is not None:
            self._shrunk = (original, (image.width, image.height))

    def _streamable(self, header: pyvips.Image) -> bool:
        """True when the request reads the pixels once, top to bottom (crop, resize, mirror,
        encode): libvips then decodes in strips and never holds the whole original. Anything that
        reads them out of order or twice (rotation, vertical flips, detectors, pixel filters, trim,
        max_bytes' re-encodes) decodes the whole image first, as before."""
        request = getattr(self.context, "request", None)
        if request is None or getattr(request, "engine", None) is not self:
            return False
        orientation = header.get("orientation") if "orientation" in header.get_fields() else 1
        filters = set(_FILTER_NAME.findall(request.filters or ""))
        return (
            orientation in (1, 2)
            and not (request.vertical_flip or request.smart or request.meta or request.debug or request.trim)
            and getattr(request, "max_bytes", None) is None
            and filters <= _STREAMING_FILTERS
        )

    def _over_cap(self, header: pyvips.Image, options: dict[str, Any]) -> bool:
        settings = settings_of(self.context)
        shrink = options.get("shrink", 1) / options.get("scale", 1)
        width, height = header.width / shrink, header.height / shrink
        return bool(
            (settings.max_width and width > settings.max_width)
            or (settings.max_height and height > settings.max_height)
        )

    def normalize(self) -> bool:
        """Thumbor's: fit the image into MAX_WIDTH x MAX_HEIGHT before anything else. Thumbor
        leaves an image alone when it is over both caps by exactly as much (a square over a
        square cap); here it is fitted too, so that no image is ever held larger than the cap."""
        if super().normalize():
            return True
        width, height = self.size
        settings = settings_of(self.context)
        cap_w, cap_h = settings.max_width, settings.max_height
        if not (cap_w and cap_h) or (width <= cap_w and height <= cap_h):
            return False
        scale = min(cap_w / width, cap_h / height)
        self.resize(max(1, round(width * scale)), max(1, round(height * scale)))
        return True

    def _shrink_options(self, header: pyvips.Image) -> dict[str, Any]:
        """Decode smaller when the output allows it (JPEG: DCT scale, WebP: any scale). Only for
        the request's own original, never a watermark loaded by the same engine class."""
        request = getattr(self.context, "request", None)
        if (
            not settings_of(self.context).jpeg_shrink_on_load
            or request is None
            or getattr(request, "engine", None) is not self
        ):
            return {}
        size = (header.width, header.height)
        fields = header.get_fields()
        # EXIF that libvips reports no orientation for: Thumbor reads the tag itself, so unknown
        tag = header.get("orientation") if "orientation" in fields else 0 if "exif-data" in fields else None
        target = pil_engine.shrink_target(request, size, pil_engine.applied_orientation(self.context.config, tag))
        if target is None:
            return {}
        if self.extension in (".jpg", ".jpeg"):
            shrink = _jpeg_shrink(size, target)
            return {"shrink": shrink} if shrink > 1 else {}
        if self.extension == ".webp":
            scale = max(target[0] / size[0], target[1] / size[1])
            return {"scale": scale} if scale < 1 else {}
        return {}

    # --- geometry (lazy on libvips) -----------------------------------------------------------

    @property
    def size(self) -> tuple[int, int]:
        if self._pending is not None:
            return self._pending[1]
        if self.on_vips:
            return self.image.width, self.image.height
        return super().size

    def crop(self, left: float, top: float, right: float, bottom: float) -> None:
        if not self.on_vips:
            return super().crop(left, top, right, bottom)
        box = int(left), int(top), int(right), int(bottom)
        inside = 0 <= box[0] < box[2] <= self.image.width and 0 <= box[1] < box[3] <= self.image.height
        if not inside:
            # outside the image: Pillow pads with black, as Thumbor always did
            self.use_pil()
            return super().crop(*box)
        self.image = self.image.crop(box[0], box[1], box[2] - box[0], box[3] - box[1])
        return None

    def resize(self, width: float, height: float) -> None:
        """Lazy: the resize is built when the image is next needed (see :attr:`image`). A resize
        of a resize with nothing between (Thumbor's MAX_WIDTH normalisation, then the requested
        size) is thus one resampling from the first one's source, and the first one is never
        built (building a lanczos3 resize computes its masks: about a millisecond)."""
        if not self.on_vips:
            return super().resize(width, height)
        size = max(1, int(width)), max(1, int(height))
        if size == self.size:
            return None
        source = self._pending[0] if self._pending is not None else self.image
        self._pending = (source, size)
        return None

    def rotate(self, degrees: float) -> None:
        if not self.on_vips or degrees % 90:
            self.use_pil()
            return super().rotate(degrees)
        # Thumbor's (and Pillow's) degrees are counter-clockwise, libvips' rot is clockwise
        turn = {90: "rot270", 180: "rot180", 270: "rot90"}.get(int(degrees) % 360)
        if turn:
            self.image = getattr(self._computed(), turn)()
        return None

    def flip_horizontally(self) -> None:
        if not self.on_vips:
            return super().flip_horizontally()
        self.image = self.image.fliphor()
        return None

    def flip_vertically(self) -> None:
        if not self.on_vips:
            return super().flip_vertically()
        self.image = self._computed().flipver()
        return None

    def convolve_separable(self, weights: Sequence[float]) -> None:
        """Convolve across, then down, with ``weights`` (normalised to sum to 1, edges extended),
        as Thumbor's ``_convolution`` does for its blur; on libvips only (:attr:`on_vips`). Lazy:
        the pixels are computed with the rest of the render, in the engine's thread pool, where
        libvips releases the GIL; a streamed decode stays streamed (libvips keeps the rows a
        convolution reads again). libvips' integer arithmetic: a twentieth of the CPU of floating
        point, within 3 levels of Thumbor's pixels (docs/decisions.md)."""
        if not self.on_vips:
            raise ValueError("convolve_separable needs a libvips image")
        mask = pyvips.Image.new_from_array([list(weights)], scale=sum(weights))
        self.image = self._behind_cache().convsep(mask, precision="integer")

    def map_colours(self, step: Callable[[pyvips.Image], pyvips.Image]) -> None:
        """``step`` on the colour bands as Thumbor's colour filters see them (:meth:`_colours`):
        it gets and returns float bands; the result is stored as Thumbor's C filters store an
        ``int`` through ``ADJUST_COLOR`` (truncated, clipped to 0..255: for these the same as
        floored and clipped). Lazy, on libvips only (:attr:`on_vips`)."""
        self._colours(lambda rgb: step(rgb.cast("float")).floor().cast("uchar"))  # cast clips

    def look_up_colours(self, tables: Sequence[Sequence[int]]) -> None:
        """Each colour band through its table of 256 values (0..255), as Thumbor's colour filters
        see the bands (:meth:`_colours`): one look-up a sample, the table computed exactly in
        Python. Lazy, on libvips only (:attr:`on_vips`)."""
        if len(tables) != 3 or any(len(table) != 256 for table in tables):
            raise ValueError("three tables of 256 values")
        interleaved = bytes(value for entry in zip(*tables, strict=True) for value in entry)
        lut = pyvips.Image.new_from_memory(interleaved, 256, 1, 3, "uchar")
        self._colours(lambda rgb: rgb.maplut(lut))

    def _colours(self, apply: Callable[[pyvips.Image], pyvips.Image]) -> None:
        """``apply`` to the colour bands as Thumbor's colour filters see them: 8-bit RGB (a grey
        image's band three times, as ``image_data_as_rgb`` converts it); the alpha band is left as
        it is. A point operation: a streamed decode stays streamed."""
        if not self.on_vips:
            raise ValueError("colour filters on libvips need a libvips image")
        image = _eight_bit(self.image)
        alpha = None
        if image.hasalpha():
            image, alpha = image.extract_band(0, n=image.bands - 1), image.extract_band(image.bands - 1)
        if image.bands == 1:
            image = image.bandjoin([image, image])
        changed = apply(image)
        if alpha is not None:
            changed = changed.bandjoin(alpha)
        self.image = changed.copy(interpretation="srgb")

    def _grey(self, alpha: bool) -> pyvips.Image:
        """Pillow's ``convert("L")`` (ITU-R 601-2 luma, its fixed-point weights and rounding,
        exactly) and ``"LA"`` (alpha kept when ``alpha``), lazily on libvips."""
        image = _eight_bit(self.image)
        extra = image.extract_band(image.bands - 1) if image.hasalpha() and alpha else None
        if image.bands >= 3:
            weights = [[19595 / 65536, 38470 / 65536, 7471 / 65536]]
            luma = image.extract_band(0, n=3).recomb(weights) + 0.5
            image = luma.floor().cast("uchar")  # the sum of 8-bit values times 2**-16: exact in float
        else:
            image = image.extract_band(0)
        if extra is not None:
            image = image.bandjoin(extra)
        return image.copy(interpretation="b-w")

    def _behind_cache(self) -> pyvips.Image:
        """The image, read through a cache of all of it when it streams from its source.

        A convolution reads each row of its input again for the rows around it, and the render's
        threads ask for their strips in any order within reach of each other. Through a streamed
        (sequential) decoder that sometimes asked for a row it had already passed: ten blur(20)
        of a 4000x3000 PNG failed with "out of order read" in about one render of ten, more often
        on a loaded machine or with more threads (docs/decisions.md). Every row of the image below
        the cache is computed once, top to bottom, and then kept: the same memory as computing it
        into memory first (the image at the size cap at most), but done lazily, with the render in
        the engine's threads, not here on the event loop."""
        image = self.image
        if self._sequential and not self._cached:
            self._cached = True
            image = self.image = image.tilecache(
                tile_width=image.width, tile_height=_CACHE_STRIP, max_tiles=-1, access="random", threaded=True
            )
        return image

    # --- pixels for detectors -----------------------------------------------------------------

    def convert_to_grayscale(self, update_image: bool = True, alpha: bool = True) -> Any:
        if not self.on_vips:
            return super().convert_to_grayscale(update_image, alpha)
        if update_image:
            # the grayscale filter: lazy, on libvips (Thumbor's returns the Pillow image; nothing
            # of Thumbor's reads it when it asks for the update)
            self.image = self._grey(alpha)
            return self.image
        # smart crop's detectors only read this (np.array of it): no need to leave libvips
        image = _eight_bit(self._computed())
        if image.hasalpha():
            image = image.extract_band(0, n=image.bands - 1)
        if image.bands >= 3:
            image = image.colourspace("b-w")
        return image.numpy()

    def has_transparency(self) -> bool:
        if not self.on_vips:
            return super().has_transparency()
        if not self.image.hasalpha():
            return False
        self._computed()
        opaque = 255 if self.image.format == "uchar" else 65535
        return self.image.extract_band(self.image.bands - 1).min() < opaque

    def get_default_extension(self) -> str:
        if not self.on_vips:
            return super().get_default_extension()
        return ".png" if self.image.hasalpha() or self.original_mode == "P" else ".jpeg"

    def paste(self, other_engine: Any, pos: tuple[int, int], merge: bool = True) -> None:
        self.use_pil()
        if isinstance(other_engine, Engine):
            other_engine.use_pil()  # a watermark or a fill loaded by this engine class
        return super().paste(other_engine, pos, merge)

    # --- encode -------------------------------------------------------------------------------

    def _pil_only(self, ext: str, quality: Any) -> bool:
        """Settings and formats only the Pillow path implements."""
        settings = settings_of(self.context)
        return (
            ext not in _VIPS_OUTPUTS
            or not isinstance(quality, int)
            or settings.pillow_jpeg_subsampling is not None
            or settings.pillow_jpeg_qtables is not None
            or settings.preserve_exif_copyright_info
            or settings.preserve_iptc_info
        )

    def read(self, extension: str | None = None, quality: Any = None) -> bytes:
        settings = settings_of(self.context)
        render_thread_priority(settings.render_niceness)
        if not self.on_vips:
            return super().read(extension, quality)
        ext = extension or self.extension or self.get_default_extension()
        if quality is None:
            quality = settings.quality
        if self._pil_only(ext, quality):
            self.use_pil()
            return super().read(extension, quality)
        # computed once into memory at the output size (small): encoding again, as max_bytes
        # does, must not read a streamed source twice
        image = _eight_bit(self._computed())
        keep = pyvips.enums.ForeignKeep.NONE
        if self.icc_profile is not None:
            keep |= pyvips.enums.ForeignKeep.ICC
        else:
            image = image.copy()
            if "icc-profile-data" in image.get_fields():
                image.remove("icc-profile-data")
        if settings.preserve_exif_info and self.exif is not None:
            image = image.copy()
            image.set_type(pyvips.GValue.blob_type, "exif-data", self.exif)  # orientation as corrected
            keep |= pyvips.enums.ForeignKeep.EXIF
        buffer = self._encode(image, ext, quality, keep)
        self.extension = ext
        if self._huge:
            release_memory()
        return buffer

    def _encode(self, image: pyvips.Image, ext: str, quality: int, keep: int) -> bytes:
        settings = settings_of(self.context)
        if ext in (".jpg", ".jpeg"):
            if image.hasalpha():
                image = image.extract_band(0, n=image.bands - 1)  # as Pillow's convert("RGB")
            return image.jpegsave_buffer(
                Q=quality, optimize_coding=True, interlace=settings.progressive_jpeg, keep=keep
            )
        if ext == ".png":
            palette = settings.pillow_preserve_indexed_mode and self.original_mode == "P"
            level = settings.png_compression_level
            return image.pngsave_buffer(
                compression=6 if level is None else int(level), palette=palette, filter="all", keep=keep
            )
        if image.bands < 3:
            image = image.colourspace("srgb")  # WebP and AVIF are colour formats
        if ext == ".webp":
            if quality >= 100:
                return image.webpsave_buffer(lossless=True, keep=keep)
            return image.webpsave_buffer(Q=quality, keep=keep)
        # AVIF: Thumbor's AVIF_SPEED (0 slow .. 10 fast) as libvips' effort (9 slow .. 0 fast)
        speed = settings.avif_speed
        effort = settings.avif_effort if speed is None else max(0, min(9, 9 - speed))
        return image.heifsave_buffer(Q=quality, compression="av1", effort=int(effort), bitdepth=8, keep=keep)


#: Thumbor PIL-engine methods that need the pixels in Pillow: they convert first (see the module
#: docstring). Everything else of the PIL engine is overridden above or touches no pixels.
PIL_STEPS = (
    "draw_rectangle",
    "get_image_data",
    "set_image_data",
    "get_image_mode",
    "image_data_as_rgb",
    "enable_alpha",
    "extract_cover",
    "read_multiple",
    "get_exif_copyright",
)
for _name in PIL_STEPS:
    setattr(Engine, _name, _needs_pil(getattr(pil_engine.Engine, _name)))

"""The stored intermediate ("mezzanine") of a huge original, which later misses render from.

Every render first fits the original into the size cap (``MAX_WIDTH`` x ``MAX_HEIGHT``: Thumbor's
``normalize``), so an original of 16000x12000 pixels is only ever seen at 2560x1920. For originals
of at least ``IMGSTACK_MEZZANINE_MIN_PIXELS``, that downscale is made once, at high quality, and
stored next to the original's results in the derived bucket: ``<bucket>/<key>/mezzanine``. A later
miss whose numbers are all in output terms (:func:`thumbor_plugins.engine.in_output_terms`: not a
manual crop, ``focal()``, ``meta``, ``trim``, ``orig``) renders from it instead of decoding the
original: the same geometry, as its size is exactly the cap-fitted size the render would start
from. Smart crop uses it too.

Never stale: it carries the ETag of the original it was made from (``source-etag``, as results
do) and is used only while the original still has that ETag (compared on the original's own GET
response, before its body is read). Deleting or overwriting the original purges it with the
results (:func:`thumbor_plugins.derived.is_variant` names it), and the next miss makes it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .limits import Declared
from .sources import Source

NAME = "mezzanine"
#: metadata naming what an intermediate is (:attr:`Plan.tag`): one made under other size caps, or
#: of another original of the same ETag's size, is not used
TAG = "mezzanine"
#: decoded colour modes an intermediate reproduces exactly (libvips and Pillow agree on them)
_MODES = {"L", "LA", "RGB", "RGBA", "I;16", ""}
#: the original's format (Thumbor's extension) -> the intermediate's: the same, so that the
#: render's default output format (the source's) does not change
_FORMATS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".webp": "webp"}


def key(source: Source) -> str:
    """The intermediate's key in the derived bucket."""
    return f"{source.prefix}{NAME}"


@dataclass(frozen=True)
class Plan:
    """What the intermediate of one original is: its size and format."""

    width: int
    height: int
    format: str
    #: the original's size (the render's proportions come from it, as with shrink-on-load)
    original: tuple[int, int] = (0, 0)

    @property
    def tag(self) -> str:
        """Stored with the intermediate and compared before it is used."""
        return f"{self.width}x{self.height}.{self.format}.{self.original[0]}x{self.original[1]}"


def normalized_size(width: int, height: int, cap: tuple[int, int]) -> tuple[int, int] | None:
    """The size the engine's ``normalize`` fits ``width`` x ``height`` to (Thumbor's rule: the side
    over the cap by more is fitted to it; over both by as much, both fit), None when the image is
    within the cap."""
    cap_w, cap_h = cap
    if not (cap_w and cap_h) or not (width > cap_w or height > cap_h):
        return None  # a side without a cap: the engine leaves such images alone
    over_w, over_h = width - cap_w, height - cap_h
    if cap_w and over_w > over_h:
        return cap_w, int(round(float(cap_w) * height / width, 0))
    if cap_h and over_h > over_w:
        return int(round(float(cap_h) * width / height, 0)), cap_h
    scale = min(cap_w / width, cap_h / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def plan(size: Declared, extension: str | None, *, palette: bool, cap: tuple[int, int],
         min_pixels: int) -> Plan | None:
    """The intermediate of an original of ``size`` and ``extension``, or None when it gets none:
    the feature off (``min_pixels`` 0), fewer pixels, an animated or unsupported format or colour
    mode, a palette PNG (its renders stay indexed), a side without a size cap, or a capped size
    that the cap would change again (only with a non-square cap: the render from it would not be
    the same)."""
    fmt = _FORMATS.get(extension or "")
    if not min_pixels or size.pixels < min_pixels or size.frames != 1 or fmt is None or palette:
        return None
    if size.mode not in _MODES:
        return None  # CMYK and the like: Pillow renders the original, libvips would convert it
    target = normalized_size(size.width, size.height, cap)
    if target is None or normalized_size(*target, cap) is not None:
        return None
    return Plan(target[0], target[1], fmt, (size.width, size.height))


def make(original: Any, plan: Plan, quality: int) -> bytes:
    """Encode the intermediate of ``original`` (bytes or a spooled file). CPU-bound: run it in a
    render thread. libvips' thumbnail: shrink-on-load, read top to bottom, Lanczos; orientation
    and metadata (EXIF, ICC) kept as they are, so the engine treats it as it treats the original."""
    import pyvips

    from . import spool

    # the source must outlive the encode: libvips reads it lazily, through Python callbacks for a
    # spooled original, and the thumbnail does not keep it (pyvips keeps the sources of loads only)
    source = spool.vips_source(original)
    image = pyvips.Image.thumbnail_source(source, plan.width, height=plan.height, size="force", no_rotate=True)
    image._references.append(source)
    if plan.format == "jpeg":
        return bytes(image.jpegsave_buffer(Q=quality, subsample_mode="off"))
    if plan.format == "png":
        return bytes(image.pngsave_buffer(compression=2))
    return bytes(image.webpsave_buffer(Q=quality, smart_subsample=True))

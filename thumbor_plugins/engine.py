"""Thumbor's PIL engine with shrink-on-load for JPEG: ``ENGINE = 'thumbor_plugins.engine'``.

Thumbor asks libjpeg for a reduced decode (``Image.draft``) only when it resizes, after the
image has been cropped, rotated or examined, i.e. already decoded at full size. This engine asks
before anything is decoded, for the smallest DCT scale (1/2, 1/4, 1/8) that still leaves at least
the output size in both dimensions, with the source's sides the way round the render turns them
(its EXIF orientation when ``RESPECT_ORIENTATION`` is on; either way round when the orientation
cannot be read): a fill crop needs its cover scale, a fit-in its fit. Everything Thumbor computes next
(crop, focal points, resize) is relative to the engine's size, so the result is the same picture;
a missing width or height is still derived from the original's proportions (libjpeg rounds the
reduced sides up, which would skew them).

Only the request's own original is shrunk (not a ``watermark()`` or ``frame()`` image loaded by
the same engine class). Left at full size: requests whose numbers are in original pixels (a manual
crop, ``focal()``, ``extract_focal()``), whose output is a fraction of the source
(``proportion()``), ``trim`` (its tolerance reads pixel edges), ``meta`` (reports the source's
size), ``orig`` sizes, and formats other than JPEG (MPO, a phone's JPEG, included).
"""

from __future__ import annotations

import math
from typing import Any

from PIL import JpegImagePlugin
from thumbor.engines.pil import Engine as PilEngine

from .settings import settings_of

#: filters whose arguments or results are in the original's pixels
_SOURCE_PIXEL_FILTERS = ("focal(", "extract_focal(", "proportion(")
#: the EXIF tag of the orientation
_ORIENTATION = 0x0112


def in_output_terms(request: Any) -> bool:
    """True when every number of ``request`` is in output pixels: it renders the same picture from
    any proportional downscale of the source that is still at least the output size (a reduced
    decode, a stored intermediate). False for numbers in source pixels (a manual crop,
    ``focal()``, ``extract_focal()``), outputs relative to the source (``proportion()``, ``orig``
    or no size), ``trim`` (its tolerance reads pixel edges) and ``meta`` (reports the source)."""
    if request is None or request.meta or getattr(request, "should_crop", False) or getattr(request, "trim", None):
        return False
    if any(name in (request.filters or "") for name in _SOURCE_PIXEL_FILTERS):
        return False
    wanted = [d for d in (request.width, request.height) if isinstance(d, int) and d > 0]
    return bool(wanted) and len(wanted) == sum(1 for d in (request.width, request.height) if d)


def shrink_target(request: Any, size: tuple[int, int], orientation: int | None = None) -> tuple[int, int] | None:
    """The smallest decode size that still serves ``request``, or None to decode in full.

    ``orientation``: the EXIF orientation (1-8) the render applies to the source (1 when it
    applies none). Known, the output's width falls on a known side of the source: a fill crop of
    a landscape photo needs only its cover scale. Unknown (None), either side may: the output
    then needs its larger side on the source's shorter side."""
    if not in_output_terms(request):
        return None
    if orientation is not None and not 1 <= orientation <= 8:
        orientation = None
    turned = [size, size[::-1]] if orientation is None else [size[::-1] if orientation >= 5 else size]
    width, height = (d if isinstance(d, int) and d > 0 else 0 for d in (request.width, request.height))
    if getattr(request, "fit_in", False) and not getattr(request, "full", False):
        boxes = [(width, height)]
        if orientation is None or getattr(request, "adaptive", False):
            boxes.append((height, width))  # adaptive- turns the box to the image's way round
        scale = max(_fit_in_scale(box, source) for box in boxes for source in turned)
    else:
        # a fill crop (and full-fit-in) covers the box: both sides at least the output's
        scale = max(_cover_scale((width, height), source) for source in turned)
    if scale > 0.5:
        return None  # no DCT scale would apply
    return math.ceil(size[0] * scale), math.ceil(size[1] * scale)


def _fit_in_scale(box: tuple[int, int], source: tuple[int, int]) -> float:
    """The scale that fits ``source`` into ``box`` (a side of 0 is unbounded)."""
    return min(b / s for b, s in zip(box, source, strict=True) if b)


def _cover_scale(box: tuple[int, int], source: tuple[int, int]) -> float:
    """The scale at which ``source`` covers ``box`` (a side of 0 asks nothing)."""
    return max(b / s for b, s in zip(box, source, strict=True) if b)


def applied_orientation(config: Any, orientation: Any) -> int | None:
    """The EXIF orientation a render applies, given the source's tag: 1 when Thumbor is told
    not to respect it (``RESPECT_ORIENTATION``), None when the tag is not one of 1-8."""
    if not getattr(config, "RESPECT_ORIENTATION", False):
        return 1
    if orientation is None:
        return 1  # no tag: nothing to apply
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else None


class Engine(PilEngine):
    #: (original size, reduced size) when this engine's image was decoded reduced
    _shrunk: tuple[tuple[int, int], tuple[int, int]] | None = None

    def create_image(self, buffer: bytes) -> Any:
        image = super().create_image(buffer)
        request = getattr(self.context, "request", None)
        if (
            isinstance(image, JpegImagePlugin.JpegImageFile)
            and settings_of(self.context).jpeg_shrink_on_load
            and request is not None
            and getattr(request, "engine", None) is self  # the original, not a watermark
        ):
            orientation = applied_orientation(self.context.config, image.getexif().get(_ORIENTATION))
            target = shrink_target(request, image.size, orientation)
            if target is not None:
                original = image.size
                image.draft(None, target)
                if image.size != original:
                    self._shrunk = (original, image.size)
        return image

    def _original_proportions(self) -> tuple[int, int] | None:
        """The original's (width, height) as the image now stands (EXIF rotation applied), while
        the image is still the whole reduced decode; None otherwise."""
        if self._shrunk is None:
            return None
        (width, height), reduced = self._shrunk
        if self.size == reduced:
            return width, height
        if self.size == reduced[::-1]:
            return height, width
        return None

    def get_proportional_width(self, new_height: float) -> float:
        original = self._original_proportions()
        if original is None:
            return super().get_proportional_width(new_height)
        return round(float(new_height) * original[0] / original[1], 0)

    def get_proportional_height(self, new_width: float) -> float:
        original = self._original_proportions()
        if original is None:
            return super().get_proportional_height(new_width)
        return round(float(new_width) * original[1] / original[0], 0)

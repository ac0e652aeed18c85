"""Thumbor's ``blur(radius[, sigma])`` filter on libvips: the shipped ``FILTERS`` list this module
in place of ``thumbor.filters.blur`` (same name, same arguments, same kernel).

Thumbor's blur copies the image into Pillow and convolves it in a C extension that holds the GIL,
on the event loop: a ``blur(20)`` of a 4000x3000 photo held every other request of its worker,
``/healthcheck`` included, for 1.25 s (docs/decisions.md). On the libvips engine
(``thumbor_plugins.vips_engine``) this adds the same separable convolution, Thumbor's own
Gaussian kernel, to the image's pipeline instead
(:meth:`~thumbor_plugins.vips_engine.Engine.convolve_separable`): it is computed with the rest of
the render in the engine's thread pool, where libvips releases the GIL. On an image in Pillow (any
other engine, a GIF, or after a step that needed Pillow) it is Thumbor's own.
"""

from __future__ import annotations

from typing import Any

from thumbor.filters import BUILTIN_FILTERS, BaseFilter, blur, filter_method

#: this module's name in ``FILTERS``
NAME = "thumbor_plugins.blur_filter"


def shipped_filters() -> list[str]:
    """Thumbor's own filters, this module in place of its blur (the shipped ``FILTERS``)."""
    return [NAME if name == "thumbor.filters.blur" else name for name in BUILTIN_FILTERS]


class Filter(blur.Filter):
    @filter_method(BaseFilter.PositiveNonZeroNumber, BaseFilter.DecimalNumber)
    async def blur(self, radius: int, sigma: float = 0) -> None:
        engine: Any = self.engine
        if getattr(engine, "on_vips", False):
            weights, _ = blur.generate_1d_matrix(sigma or radius, min(radius, blur.MAX_RADIUS))
            engine.convolve_separable(weights)
            return
        await blur.Filter.blur(self, radius, sigma)

"""Thumbor's ``blur(radius[, sigma])`` on libvips: Thumbor's own Gaussian kernel, added to the
image's pipeline as a separable convolution
(:meth:`~thumbor_plugins.vips_engine.Engine.convolve_separable`). Thumbor's blur of a 4000x3000
photo held every other request of its worker for 1.25 s (docs/decisions.md)."""

from __future__ import annotations

from typing import Any

from thumbor.filters import BaseFilter, blur, filter_method

from . import on_vips


class Filter(blur.Filter):
    @filter_method(BaseFilter.PositiveNonZeroNumber, BaseFilter.DecimalNumber)
    async def blur(self, radius: int, sigma: float = 0) -> None:
        engine: Any = self.engine
        if on_vips(engine):
            weights, _ = blur.generate_1d_matrix(sigma or radius, min(radius, blur.MAX_RADIUS))
            engine.convolve_separable(weights)
            return
        await blur.Filter.blur(self, radius, sigma)

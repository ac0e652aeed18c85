"""Thumbor's ``rgb(r, g, b)`` on libvips: ``255 * amount / 100`` added to each colour band."""

from __future__ import annotations

from typing import Any

from thumbor.filters import BaseFilter, filter_method, rgb

from . import adjust_color, on_vips, percent_of_255


class Filter(rgb.Filter):
    @filter_method(BaseFilter.Number, BaseFilter.Number, BaseFilter.Number)
    async def rgb(self, red: int, green: int, blue: int) -> None:
        engine: Any = self.engine
        if on_vips(engine):
            deltas = [percent_of_255(red), percent_of_255(green), percent_of_255(blue)]
            engine.look_up_colours([[adjust_color(v + delta) for v in range(256)] for delta in deltas])
            return
        await rgb.Filter.rgb(self, red, green, blue)

"""Thumbor's URL grammar, parsed and generated side by side (pure, no I/O)::

    /<signature>/[debug/][meta/][trim/][AxB:CxD/][fit-in/][-W]x[-H]/[halign/][valign/][smart/]
        [filters:f1(..):f2(..)/]<image>

The regex is the one Thumbor routes with (``libthumbor.url.Url.regex``), rewritten with one named
group per option, so that we and Thumbor always split a path the same way.
"""

from __future__ import annotations

import re

from .errors import MalformedUrl
from .params import Filter, Params, Size

_PATH = re.compile(
    r"(?:(?P<debug>debug)/)?"
    r"(?:(?P<meta>meta)/)?"
    r"(?:(?P<trim>trim(?::(?:top-left|bottom-right))?(?::\d+)?)/)?"
    r"(?:(?P<crop_left>\d+)x(?P<crop_top>\d+):(?P<crop_right>\d+)x(?P<crop_bottom>\d+)/)?"
    r"(?:(?P<fit_in>(?:adaptive-)?(?:full-)?fit-in)/)?"
    r"(?:(?P<flip_horizontal>-)?(?P<width>\d+|orig)?x(?P<flip_vertical>-)?(?P<height>\d+|orig)?/)?"
    r"(?:(?P<halign>left|right|center)/)?"
    r"(?:(?P<valign>top|bottom|middle)/)?"
    r"(?:(?P<smart>smart)/)?"
    # Thumbor's own choice: the shortest text ending in ")/". Checked item by item below.
    r"(?:filters:(?P<filters>.+?\))/)?"
    r"(?P<image>.+)",
    re.ASCII,  # \d must not match other scripts' digits
)
_FILTER = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)\((?P<args>.*)\)", re.ASCII | re.DOTALL)


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += (char == "(") - (char == ")")
        if depth < 0:
            return False
    return depth == 0


def split_filters(text: str) -> tuple[Filter, ...]:
    """``"a(1):b(x,fill(f00))"`` -> ``(Filter("a", "1"), Filter("b", "x,fill(f00)"))``.

    Splits on ":" outside parentheses only. Each item must be exactly ``name(args)`` with
    balanced parentheses in ``args``, else MalformedUrl.
    """
    if not _balanced(text):
        raise MalformedUrl(f"unbalanced parentheses in filters {text!r}")
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char == "(") - (char == ")")
        if char == ":" and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    filters = []
    for item in items:
        match = _FILTER.fullmatch(item)
        # "a(1)b(2)" matches name(args) with args "1)b(2": balanced args rule that out.
        if not match or not _balanced(match["args"]):
            raise MalformedUrl(f"bad filter {item!r}: expected name(args)")
        filters.append(Filter(match["name"], match["args"]))
    return tuple(filters)


def _size(text: str | None) -> Size:
    if text is None:
        return None
    return "orig" if text == "orig" else int(text)


def parse(path: str) -> Params:
    """Parse everything after ``/<signature>/`` (no leading slash) into Params.

    Raises MalformedUrl when the path is not Thumbor's grammar, a filter is not ``name(args)``,
    or ``expires()``/``v()`` is repeated or invalid.
    """
    match = _PATH.fullmatch(path)
    if match is None:
        raise MalformedUrl("not a Thumbor URL path")
    g = match.groupdict()
    crop = None
    if g["crop_left"] is not None:
        crop = (int(g["crop_left"]), int(g["crop_top"]), int(g["crop_right"]), int(g["crop_bottom"]))
    params = Params(
        image=g["image"],
        debug=g["debug"] is not None,
        meta=g["meta"] is not None,
        trim=g["trim"],
        crop=crop,
        fit_in=g["fit_in"],
        width=_size(g["width"]),
        height=_size(g["height"]),
        flip_horizontal=g["flip_horizontal"] is not None,
        flip_vertical=g["flip_vertical"] is not None,
        halign=g["halign"],
        valign=g["valign"],
        smart=g["smart"] is not None,
        filters=split_filters(g["filters"]) if g["filters"] is not None else (),
    )
    _ = params.expires_at, params.version  # validate our own filters now, not at first use
    return params


def generate(params: Params) -> str:
    """The canonical path for ``params`` (no leading slash, no signature): ``parse`` inverted."""
    parts = []
    if params.debug:
        parts.append("debug")
    if params.meta:
        parts.append("meta")
    if params.trim:
        parts.append(params.trim)
    if params.crop is not None:
        parts.append("{}x{}:{}x{}".format(*params.crop))
    if params.fit_in:
        parts.append(params.fit_in)
    if (params.width is not None or params.height is not None
            or params.flip_horizontal or params.flip_vertical):
        width = "" if params.width is None else params.width
        height = "" if params.height is None else params.height
        parts.append(f"{'-' * params.flip_horizontal}{width}x{'-' * params.flip_vertical}{height}")
    if params.halign:
        parts.append(params.halign)
    if params.valign:
        parts.append(params.valign)
    if params.smart:
        parts.append("smart")
    if params.filters:
        parts.append("filters:" + ":".join(str(f) for f in params.filters))
    parts.append(params.image)
    return "/".join(parts)


def split_signed(raw_path: str) -> tuple[str, str]:
    """``"/<signature-or-unsafe>/<rest>"`` -> ``(signature, rest)``, both non-empty, untouched.

    MalformedUrl for any other shape.
    """
    if not raw_path.startswith("/"):
        raise MalformedUrl("URL path must start with '/'")
    signature, slash, rest = raw_path[1:].partition("/")
    if not signature or not slash or not rest:
        raise MalformedUrl("expected /<signature>/<path>")
    return signature, rest

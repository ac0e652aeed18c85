"""Bounds on what one URL may cost to render (pure, no I/O), checked with the signature.

A signed link is trusted to be what its signer meant, not to be cheap: Thumbor accepts
``blur(150)`` (11 CPU-seconds on a 2560-pixel output here), a convolution matrix of any size and
any number of filters. These bounds keep every filter's cost in proportion to the output, which
the size cap already bounds. Over a bound: :class:`~.errors.TooCostly` (400), before anything is
loaded. The numbers are the contract; the README's "Limits and guarantees" lists them.
"""

from __future__ import annotations

from .errors import TooCostly
from .params import EXPIRES, VERSION, Params

#: filters in one URL (ours, expires() and v(), not counted)
MAX_FILTERS = 10
#: filter -> the largest value of each numeric argument, by position
ARGUMENT_BOUNDS: dict[str, tuple[float, ...]] = {
    "blur": (20.0, 20.0),  # radius, sigma (Thumbor: 150)
    "sharpen": (10.0, 10.0),  # amount, radius
    "noise": (100.0,),  # amount (percent)
    "proportion": (1.0,),  # > 1 would scale past the size cap
}
#: items of a convolution() matrix (7x7)
MAX_CONVOLUTION_ITEMS = 49


def _numbers(args: str) -> list[float | None]:
    values: list[float | None] = []
    for text in args.split(","):
        try:
            values.append(float(text))
        except ValueError:
            values.append(None)
    return values


def check_costs(params: Params, max_filters: int = MAX_FILTERS) -> None:
    """Raises :class:`TooCostly` when ``params`` ask for more than the bounds above."""
    filters = [f for f in params.filters if f.name not in (EXPIRES, VERSION)]
    if max_filters and len(filters) > max_filters:
        raise TooCostly(f"{len(filters)} filters: at most {max_filters}")
    for item in filters:
        bounds = ARGUMENT_BOUNDS.get(item.name, ())
        for position, (value, bound) in enumerate(zip(_numbers(item.args), bounds, strict=False)):
            if value is not None and abs(value) > bound:
                raise TooCostly(f"{item.name}(): argument {position + 1} is {value:g}, at most {bound:g}")
        if item.name == "convolution":
            items = item.args.split(",", 1)[0].split(";")
            if len(items) > MAX_CONVOLUTION_ITEMS:
                raise TooCostly(f"convolution(): {len(items)} matrix items, at most {MAX_CONVOLUTION_ITEMS}")

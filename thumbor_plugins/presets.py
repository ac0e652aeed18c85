"""Named transformations ("presets"): ``{"thumb": "fit-in/320x320", "hero": "1280x0"}``.

Each preset is written in the one URL grammar (:mod:`thumbor_plugins.urls`) as the options that
stand before the image. Used by ``imgstack url --preset``, by the warm-up of uploads, and by
``IMGSTACK_ONLY_PRESETS`` (a request must be exactly a preset, plus optionally ``format()``,
``expires()`` and ``v()``).

Pure: no Thumbor, no S3.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from .urls import Params, parse

#: filters a request may add to a preset without becoming another transformation
_FREE_FILTERS = {"expires", "v", "format"}


class PresetError(ValueError):
    """A presets file that cannot be used; the message names the file and the preset."""


def default_path() -> Path:
    """The presets shipped with the package (``config/presets.json`` in a checkout; the same file
    inside an installed wheel)."""
    # next to this module, not importlib.resources: thumbor-plugins-gifv installs into the same
    # ``thumbor_plugins`` folder, so the package's files need not be where the import system says
    return Path(__file__).resolve().parent / "data" / "presets.json"


@lru_cache(maxsize=8)
def load(path: str | None = None) -> Mapping[str, Params]:
    """Presets by name (``image`` left empty). Cached per path."""
    file = Path(path) if path else default_path()
    try:
        raw = json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise PresetError(f"cannot read presets file {file}: {error}") from None
    if not isinstance(raw, dict):
        raise PresetError(f"{file}: expected a JSON object of name -> options")
    presets = {}
    for name, options in raw.items():
        if name.startswith("_"):
            continue
        if not isinstance(options, str):
            raise PresetError(f"{file}: preset {name!r} must be a string like 'fit-in/320x320'")
        try:
            params = parse(f"{options.strip('/')}/_" if options.strip("/") else "_")
        except ValueError as error:
            raise PresetError(f"{file}: preset {name!r}: {error}") from None
        if params.image != "_":
            raise PresetError(f"{file}: preset {name!r} has an unknown option in {options!r}")
        presets[name] = dataclasses.replace(params, image="")
    return presets


def for_image(preset: Params, image: str) -> Params:
    """The preset applied to ``image`` (percent-encoded URL form)."""
    return dataclasses.replace(preset, image=image)


def matches(params: Params, presets: Mapping[str, Params]) -> str | None:
    """The name of the preset ``params`` is (ignoring image, expiry, version and format), or None."""
    bare = dataclasses.replace(
        params, image="", filters=tuple(f for f in params.filters if f.name not in _FREE_FILTERS)
    )
    for name, preset in presets.items():
        if bare == preset:
            return name
    return None

"""Every Thumbor name and signature imgstack relies on, named here, so that upgrading Thumbor
(pinned ``thumbor==7.8.0``) is a test run, not an outage: if one moves, is renamed or changes its
parameters, this file fails and says which. Not a behaviour test: the integration tests do that.

Where each is used: thumbor_plugins/app.py (the request handler, an adapter over Thumbor's
imaging handler), vips_engine.py / engine.py (engines subclassing Thumbor's PIL engine),
loader.py, result_storage.py, detectors.py, handler_lists.py, serve.py, config.py.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

#: (module, attribute path, parameters it must accept, in order, after self)
CALLABLES = [
    # app.py: the application and the handler we subclass
    ("thumbor.app", "ThumborServiceApp.get_handlers", []),
    ("thumbor.app", "ThumborServiceApp.__init__", ["context"]),
    ("thumbor.handlers.imaging", "ImagingHandler.check_image", ["kwargs"]),
    ("thumbor.handlers.imaging", "ImagingHandler.get", []),
    ("thumbor.handlers.imaging", "ImagingHandler.compute_etag", []),
    ("thumbor.handlers", "ContextHandler.initialize", ["context"]),
    ("thumbor.handlers", "ContextHandler.log_exception", []),
    ("thumbor.handlers", "BaseHandler.prepare", []),
    ("thumbor.handlers", "BaseHandler.on_finish", []),
    ("thumbor.handlers", "BaseHandler._error", ["status", "msg"]),
    ("thumbor.handlers", "BaseHandler.execute_image_operations", []),
    ("thumbor.handlers", "BaseHandler.finish_request", ["result_from_storage"]),
    ("thumbor.handlers", "BaseHandler._write_results_to_client", ["results", "content_type"]),
    ("thumbor.handlers", "BaseHandler._store_results", ["result_storage", "metrics", "results"]),
    ("thumbor.handlers", "BaseHandler.define_image_type", ["context", "result"]),
    ("thumbor.context", "Context.__init__", ["server", "config", "importer", "request_handler"]),
    ("thumbor.context", "RequestParameters.__init__", ["debug", "meta", "trim", "crop_left", "crop_top",
                                                       "crop_right", "crop_bottom", "crop", "adaptive", "full",
                                                       "fit_in", "stretch", "width", "height", "horizontal_flip",
                                                       "vertical_flip", "halign", "valign", "filters", "smart",
                                                       "quality", "image", "url", "extension", "buffer",
                                                       "focal_points", "unsafe", "hash", "accepts_webp",
                                                       "request", "max_age", "auto_png_to_jpg"]),
    # loader.py, result_storage.py
    ("thumbor.loaders", "LoaderResult.__init__", ["buffer", "successful", "error", "metadata", "extras"]),
    ("thumbor.result_storages", "BaseStorage.__init__", ["context"]),
    ("thumbor.result_storages", "ResultStorageResult.__init__", ["buffer", "successful", "error", "metadata"]),
    ("thumbor.engines", "BaseEngine.get_mimetype", ["buffer"]),
    # engines: the PIL engine's methods our engines override and call
    ("thumbor.engines.pil", "Engine.create_image", ["buffer"]),
    ("thumbor.engines.pil", "Engine.read", ["extension", "quality"]),
    ("thumbor.engines.pil", "Engine.crop", ["left", "top", "right", "bottom"]),
    ("thumbor.engines.pil", "Engine.resize", ["width", "height"]),
    ("thumbor.engines.pil", "Engine.rotate", ["degrees"]),
    ("thumbor.engines.pil", "Engine.flip_horizontally", []),
    ("thumbor.engines.pil", "Engine.flip_vertically", []),
    ("thumbor.engines.pil", "Engine.convert_to_grayscale", ["update_image", "alpha"]),
    ("thumbor.engines.pil", "Engine.has_transparency", []),
    ("thumbor.engines.pil", "Engine.get_default_extension", []),
    ("thumbor.engines.pil", "Engine.paste", ["other_engine", "pos", "merge"]),
    ("thumbor.engines", "BaseEngine.get_proportional_width", ["new_height"]),
    ("thumbor.engines", "BaseEngine.get_proportional_height", ["new_width"]),
    # detectors.py
    ("thumbor.detectors", "BaseDetector.detect", []),
    # serve.py starts Thumbor's own server entry point in each worker
    ("thumbor.server", "main", ["arguments"]),
]

#: other names imported or read
NAMES = [
    ("thumbor.utils", "CONTENT_TYPE"),
    ("thumbor.config", "Config"),
    ("thumbor.filters", "BaseFilter"),
    ("thumbor.filters", "PHASE_PRE_LOAD"),
]


def resolve(module: str, path: str):  # noqa: ANN201
    target = importlib.import_module(module)
    for part in path.split("."):
        target = getattr(target, part)
    return target


@pytest.mark.parametrize(("module", "path", "parameters"), CALLABLES, ids=[f"{m}.{p}" for m, p, _ in CALLABLES])
def test_thumbor_still_has(module: str, path: str, parameters: list[str]) -> None:
    target = resolve(module, path)
    assert callable(target)
    signature = inspect.signature(target)
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    names = [name for name, p in signature.parameters.items() if name not in ("self", "cls") and p.kind not in variadic]
    assert names[:len(parameters)] == parameters, f"{module}.{path}{signature}"


@pytest.mark.parametrize(("module", "name"), NAMES)
def test_thumbor_still_exports(module: str, name: str) -> None:
    resolve(module, name)


def test_the_engine_size_is_still_a_property() -> None:
    from thumbor.engines import BaseEngine

    assert isinstance(inspect.getattr_static(BaseEngine, "size"), property)


def test_thumbor_is_the_pinned_release() -> None:
    """The names above were checked against this release; a new one: run this file, then the suite."""
    from importlib.metadata import version

    assert version("thumbor") == "7.8.0"


def test_the_attributes_our_handler_reads_exist() -> None:
    """Attributes (not methods) our code reads: RequestParameters' (the transformer's inputs),
    tornado's handler state (``_finished``, ``_headers``, ``_status_code``), filter metadata."""
    from thumbor.context import RequestParameters
    from thumbor.filters.blur import Filter as Blur
    from tornado.web import RequestHandler

    request = RequestParameters()
    for name in ("width", "height", "fit_in", "meta", "filters", "prevent_result_storage", "detection_error",
                 "url", "unsafe", "quality", "smart", "trim"):
        assert hasattr(request, name), name
    assert "_finished" in RequestHandler.__init__.__code__.co_names
    assert {"_headers", "_status_code"} <= set(RequestHandler.clear.__code__.co_names)
    # app.known_filters reads each filter's name and pattern from here, once pre_compile ran
    Blur.pre_compile()
    assert Blur.runnable_method.filter_data["name"] == "blur"
    assert Blur.regex is not None

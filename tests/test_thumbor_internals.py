"""Every Thumbor (and tornado) name, signature and attribute imgstack relies on, named here, so that
upgrading Thumbor (pinned ``thumbor==7.8.0``) is a test run, not an outage: if one moves, is
renamed or changes its parameters, this file fails and says which. Not a behaviour test: the
integration tests do that.

Two kinds:

- internals (:data:`ADAPTER_CALLABLES`, :data:`ADAPTER_ATTRIBUTES`): hooks overridden, private
  attributes read, the route replaced, RequestParameters attributes set and read, Thumbor's command
  line. All of them are used in thumbor_plugins/thumbor_adapter.py and nowhere else
  (:func:`test_only_the_adapter_and_the_plugins_import_thumbor`);
- plugin interfaces (:data:`PLUGIN_CALLABLES`): Thumbor's public contract with a loader
  (loader.py), a result storage (result_storage.py), an engine (engine.py, vips_engine.py), a
  detector (detectors.py) and settings (config.py).
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "thumbor_plugins"

#: (module, attribute path, parameters it must accept, in order, after self)
ADAPTER_CALLABLES = [
    # Application: Thumbor's application, its imaging route replaced, each connection wrapped
    ("thumbor.app", "ThumborServiceApp.__init__", ["context"]),
    ("thumbor.app", "ThumborServiceApp.get_handlers", []),
    ("thumbor.app", "ThumborServiceApp.start_request", ["server_conn", "request_conn"]),
    ("tornado.http1connection", "HTTP1Connection.__init__", ["stream", "is_client", "params", "context"]),
    ("tornado.http1connection", "HTTP1Connection.set_max_body_size", ["max_body_size"]),
    ("tornado.httpserver", "_HTTPRequestContext.__init__", ["stream", "address", "protocol"]),
    ("tornado.httputil", "HTTPMessageDelegate.headers_received", ["start_line", "headers"]),
    ("tornado.httputil", "HTTPMessageDelegate.data_received", ["chunk"]),
    ("tornado.httputil", "HTTPMessageDelegate.finish", []),
    ("tornado.httputil", "HTTPMessageDelegate.on_connection_close", []),
    # _Early: an answer written to the connection without a request handler
    ("tornado.http1connection", "HTTP1Connection.write_headers", ["start_line", "headers", "chunk"]),
    ("tornado.http1connection", "HTTP1Connection.finish", []),
    ("tornado.httputil", "ResponseStartLine", ["version", "code", "reason"]),
    ("tornado.httputil", "HTTPHeaders.__init__", []),
    ("tornado.httputil", "format_timestamp", ["ts"]),
    # ImagingAdapter: the hooks of Thumbor's imaging handler it overrides or calls
    ("thumbor.handlers.imaging", "ImagingHandler.get", []),
    ("thumbor.handlers.imaging", "ImagingHandler.head", []),
    ("thumbor.handlers.imaging", "ImagingHandler.check_image", ["kwargs"]),
    ("thumbor.handlers.imaging", "ImagingHandler.compute_etag", []),
    ("thumbor.handlers", "ContextHandler.initialize", ["context"]),
    ("thumbor.handlers", "ContextHandler.log_exception", []),
    ("thumbor.handlers", "BaseHandler.prepare", []),
    ("thumbor.handlers", "BaseHandler.on_finish", []),
    ("thumbor.handlers", "BaseHandler._error", ["status", "msg"]),
    ("thumbor.handlers", "BaseHandler.execute_image_operations", []),
    ("thumbor.handlers", "BaseHandler.define_image_type", ["context", "result"]),
    ("thumbor.handlers", "BaseHandler._write_results_to_client", ["results", "content_type"]),
    ("tornado.web", "RequestHandler.compute_etag", []),
    ("tornado.web", "RequestHandler.write_error", ["status_code"]),
    # thumbor_request: Thumbor's request parameters
    ("thumbor.context", "RequestParameters.__init__", ["debug", "meta", "trim", "crop_left", "crop_top",
                                                       "crop_right", "crop_bottom", "crop", "adaptive", "full",
                                                       "fit_in", "stretch", "width", "height", "horizontal_flip",
                                                       "vertical_flip", "halign", "valign", "filters", "smart",
                                                       "quality", "image", "url", "extension", "buffer",
                                                       "focal_points", "unsafe", "hash", "accepts_webp",
                                                       "request", "max_age", "auto_png_to_jpg"]),
    # define_image_type: what it asks the engine; mimetype
    ("thumbor.engines", "BaseEngine.is_multiple", []),
    ("thumbor.engines", "BaseEngine.can_auto_convert_to_avif", []),
    ("thumbor.engines", "BaseEngine.can_convert_to_webp", []),
    ("thumbor.engines", "BaseEngine.get_mimetype", ["buffer"]),
    # checked_settings, run_thumbor (thumbor_plugins.serve)
    ("thumbor.console", "get_server_parameters", ["arguments"]),
    ("thumbor.server", "get_config", ["config_path", "use_environment"]),
    ("thumbor.server", "main", ["arguments"]),
    # run_thumbor's handed-off server (a worker of serve.Balancer): the name main calls, what it
    # overrides and calls of tornado's server
    ("thumbor.server", "run_server", ["application", "context"]),
    ("tornado.httpserver", "HTTPServer.on_close", ["server_conn"]),
    ("tornado.httpserver", "HTTPServer.handle_stream", ["stream", "address"]),
]

#: attributes (not methods) the adapter sets or reads
ADAPTER_ATTRIBUTES = {
    "RequestParameters (set by thumbor_request, read by the handler)": [
        "width", "height", "fit_in", "meta", "url", "unsafe", "format", "filters",
        "prevent_result_storage", "detection_error",
    ],
    "ServerParameters (checked_settings, settings_of, loopback_base)": [
        "config_path", "use_environment", "security_key", "ip", "port",
    ],
}

#: Thumbor's plugin interfaces: (module, attribute path, parameters)
PLUGIN_CALLABLES = [
    ("thumbor.loaders", "LoaderResult.__init__", ["buffer", "successful", "error", "metadata", "extras"]),
    ("thumbor.result_storages", "BaseStorage.__init__", ["context"]),
    ("thumbor.result_storages", "ResultStorageResult.__init__", ["buffer", "successful", "error", "metadata"]),
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
    ("thumbor.detectors", "BaseDetector.detect", []),
    ("thumbor.context", "Context.__init__", ["server", "config", "importer", "request_handler"]),
    # filters/: Thumbor's filters we compute on libvips, the blur's kernel, the filters' interface
    ("thumbor.filters.blur", "generate_1d_matrix", ["sigma", "radius"]),
    ("thumbor.filters.blur", "Filter.blur", ["radius", "sigma"]),
    ("thumbor.filters.brightness", "Filter.brightness", ["value"]),
    ("thumbor.filters.contrast", "Filter.contrast", ["value"]),
    ("thumbor.filters.rgb", "Filter.rgb", ["red", "green", "blue"]),
    ("thumbor.filters.saturation", "Filter.saturation", ["change"]),
    ("thumbor.filters", "BaseFilter.run", []),
]

#: other names imported
NAMES = [
    ("thumbor.utils", "CONTENT_TYPE"),
    ("thumbor.config", "Config"),
    ("thumbor.filters", "BaseFilter"),
    ("thumbor.filters", "PHASE_PRE_LOAD"),
    ("thumbor.filters", "BUILTIN_FILTERS"),
    ("thumbor.filters", "filter_method"),
    ("thumbor.filters.blur", "MAX_RADIUS"),
]

#: modules that may import Thumbor: the adapter, and the plugins Thumbor loads by name (with the
#: Thumbor modules each may use)
THUMBOR_IMPORTERS = {
    "thumbor_adapter.py": None,  # any
    "config.py": {"thumbor.config"},
    "loader.py": {"thumbor.loaders"},
    "result_storage.py": {"thumbor.result_storages"},
    "engine.py": {"thumbor.engines.pil"},
    "vips_engine.py": {"thumbor.engines", "thumbor.engines.pil"},
    "detectors.py": {"thumbor.detectors"},
    "filters/__init__.py": {"thumbor.filters"},
    "filters/blur.py": {"thumbor.filters"},
    "filters/brightness.py": {"thumbor.filters"},
    "filters/contrast.py": {"thumbor.filters"},
    "filters/rgb.py": {"thumbor.filters"},
    "filters/saturation.py": {"thumbor.filters"},
    "cli/dev.py": {"thumbor"},  # finds Thumbor's fixtures folder
}


def resolve(module: str, path: str):  # noqa: ANN201
    target = importlib.import_module(module)
    for part in path.split("."):
        target = getattr(target, part)
    return target


def check_signature(module: str, path: str, parameters: list[str]) -> None:
    target = resolve(module, path)
    assert callable(target)
    signature = inspect.signature(target)
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    names = [name for name, p in signature.parameters.items() if name not in ("self", "cls") and p.kind not in variadic]
    assert names[:len(parameters)] == parameters, f"{module}.{path}{signature}"


@pytest.mark.parametrize(("module", "path", "parameters"), ADAPTER_CALLABLES,
                         ids=[f"{m}.{p}" for m, p, _ in ADAPTER_CALLABLES])
def test_thumbor_still_has_what_the_adapter_uses(module: str, path: str, parameters: list[str]) -> None:
    check_signature(module, path, parameters)


@pytest.mark.parametrize(("module", "path", "parameters"), PLUGIN_CALLABLES,
                         ids=[f"{m}.{p}" for m, p, _ in PLUGIN_CALLABLES])
def test_thumbor_still_has_the_plugin_interfaces(module: str, path: str, parameters: list[str]) -> None:
    check_signature(module, path, parameters)


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


def test_the_attributes_the_adapter_reads_exist() -> None:
    from thumbor.context import RequestParameters, ServerParameters

    request = RequestParameters()
    for name in ADAPTER_ATTRIBUTES["RequestParameters (set by thumbor_request, read by the handler)"]:
        assert hasattr(request, name), name
    server = ServerParameters(port=8888, ip="127.0.0.1", config_path=None, keyfile=None, log_level="warning",
                              app_class="thumbor.app.ThumborServiceApp")
    for name in ADAPTER_ATTRIBUTES["ServerParameters (checked_settings, settings_of, loopback_base)"]:
        assert hasattr(server, name), name
    # define_image_type reads the engine Thumbor's pipeline puts on the request once it loaded
    from thumbor.handlers import BaseHandler

    assert "self.context.request.engine = " in inspect.getsource(BaseHandler)


def test_the_private_handler_state_the_adapter_reads_exists() -> None:
    """tornado's ``_finished`` and ``_headers`` (answered, content_type_sent), Thumbor's
    ``_response_length`` (bytes_sent; its render metrics read it)."""
    from thumbor.handlers import BaseHandler
    from tornado.web import RequestHandler

    assert "_finished" in RequestHandler.__init__.__code__.co_names
    assert "_headers" in RequestHandler.clear.__code__.co_names
    assert "_response_length" in BaseHandler.prepare.__code__.co_names
    assert "_response_length" in BaseHandler.on_finish.__code__.co_names


def test_thumbor_still_routes_images_to_check_image_and_appends_its_imaging_route() -> None:
    """ImagingAdapter replaces the one route of ImagingHandler and takes requests at check_image."""
    from thumbor.app import ThumborServiceApp
    from thumbor.handlers.imaging import ImagingHandler

    assert "check_image" in ImagingHandler.get.__code__.co_names
    assert "check_image" in ImagingHandler.head.__code__.co_names
    assert "ImagingHandler" in ThumborServiceApp.get_handlers.__code__.co_names


def test_filters_still_carry_their_name_and_pattern() -> None:
    """known_filters reads each filter's name and pattern, once pre_compile ran."""
    from thumbor.filters.blur import Filter as Blur

    Blur.pre_compile()
    assert Blur.runnable_method.filter_data["name"] == "blur"
    assert Blur.regex is not None


def _thumbor_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return {name for name in found if name == "thumbor" or name.startswith("thumbor.")}


def test_only_the_adapter_and_the_plugins_import_thumbor() -> None:
    """Internals go through thumbor_adapter.py: a new use elsewhere is added there, and named above."""
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        imported = _thumbor_imports(path)
        if not imported:
            continue
        assert name in THUMBOR_IMPORTERS, f"{name} imports {sorted(imported)}: go through thumbor_adapter.py"
        allowed = THUMBOR_IMPORTERS[name]
        assert allowed is None or imported <= allowed, f"{name} imports {sorted(imported - allowed)}"


def test_the_context_still_makes_its_filters_factory_by_the_name_the_adapter_replaces() -> None:
    """share_filters_factory replaces ``thumbor.context.FiltersFactory``, the name Context's
    ``__init__`` calls; a factory must still hold nothing but its name -> class map."""
    from thumbor.context import Context
    from thumbor.filters import FiltersFactory

    assert "FiltersFactory" in Context.__init__.__code__.co_names
    assert set(vars(FiltersFactory([]))) == {"filter_classes_map"}


def test_thumbor_main_calls_run_server_by_its_module_name() -> None:
    """A worker handed its connections replaces ``thumbor.server.run_server``: Thumbor's main must
    still look it up by that name, and make the server the way the replacement does (tornado's
    HTTPServer with ``xheaders``), so that the two serve requests alike."""
    import inspect

    import thumbor.server

    assert "run_server" in thumbor.server.main.__code__.co_names
    assert "HTTPServer(application, xheaders=True)" in inspect.getsource(thumbor.server.run_server)

"""Every use of a Thumbor (or tornado) internal, in this one module.

Thumbor's plugin interfaces proper (a loader's ``load``, a result storage's ``get``/``put``, an
engine, ``Config.define``) are its public contract and stay in those modules. What is here is
everything else imgstack relies on: hooks of Thumbor's imaging handler it overrides, private
attributes it reads, the imaging route it replaces, the attributes of Thumbor's
``RequestParameters`` it sets and reads, Thumbor's command line and config loading. Each is named
in ``tests/test_thumbor_internals.py``, which fails when one moves or changes its signature, so
that upgrading Thumbor is a test run, not an outage.

- :class:`RequestState`, :func:`state_of`: what imgstack knows about one request, one typed object
  shared by the image handler, the loader and the result storage (kept on Thumbor's
  ``RequestParameters`` under one attribute).
- :class:`Application`: Thumbor's application with our image handler in its imaging route's place,
  and :class:`EarlyAnswer`: a GET answered from its headers alone, below tornado's routing and
  request handlers (a hot hit, :func:`thumbor_plugins.app.hot_hit`).
- :class:`ImagingAdapter`: Thumbor's imaging handler reduced to what the image handler
  (:class:`thumbor_plugins.app.ImageHandler`) needs: it implements :meth:`~ImagingAdapter.serve`
  and :meth:`~ImagingAdapter.report`, and calls :meth:`~ImagingAdapter.render` for a miss.
- :func:`known_filters`, :func:`loopback_base`, :func:`mimetype`, :func:`cap_body`: what else is
  read from Thumbor or tornado.
- :func:`share_filters_factory`: one Thumbor ``FiltersFactory`` per process instead of one per
  request (the name ``thumbor.context.FiltersFactory`` replaced).
- :func:`checked_settings`, :func:`run_thumbor`: Thumbor's command line, for
  :mod:`thumbor_plugins.serve` (the worker's event loop, its start-up objects frozen; with
  several workers, :class:`HandedOffServer` in place of ``thumbor.server.run_server``'s, serving
  the connections the supervisor hands over).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hashlib
import logging
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import thumbor.context
import tornado.ioloop
import tornado.iostream
import tornado.web
from thumbor.app import ThumborServiceApp
from thumbor.context import RequestParameters
from thumbor.engines import BaseEngine
from thumbor.filters import FiltersFactory
from thumbor.handlers.imaging import ImagingHandler
from thumbor.utils import CONTENT_TYPE
from tornado import httputil
from tornado.httpserver import HTTPServer

from . import clients, observe
from .pipeline import Decision, public_text
from .serve import CLOSED, READY
from .settings import Settings, settings_of

logger = logging.getLogger("imgstack")

#: the largest body read (and ignored) on a route that takes none
IGNORED_BODY_BYTES = 64 * 1024


# --- per-request state ----------------------------------------------------------------------

@dataclass(slots=True)
class RequestState:
    """What imgstack knows about one image request. Made by the image handler; the loader and
    the result storage reach it from Thumbor's request with :func:`state_of`."""

    #: the pipeline's decision (None: the request was refused before one was made)
    decision: Decision | None = None
    #: the handler read the result storage itself: the result storage's ``get`` must not again
    looked_up: bool = False
    #: True: served from the result storage; False: looked up, then rendered; None: not looked up
    cache_hit: bool | None = None
    #: the reason word of a refusal (logs, metrics, the public text)
    rejection: str | None = None
    #: ``time.perf_counter()`` when the request's own original was loaded (render time from there)
    loaded_at: float | None = None
    #: ETag of the original the render is made from: stored only while the original still has it
    source_etag: str | None = None
    #: the original's size, when the render is made from its stored intermediate (the engine
    #: takes the output's proportions from it, as it does after a reduced decode)
    intermediate_of: tuple[int, int] | None = None


#: the one attribute of Thumbor's RequestParameters that carries our state
_STATE = "imgstack_state"


def state_of(request: Any) -> RequestState:
    """The state on Thumbor's request (``context.request``), made on first use."""
    state = getattr(request, _STATE, None)
    if state is None:
        state = RequestState()
        setattr(request, _STATE, state)
    return state


# --- Thumbor's request parameters -------------------------------------------------------------

def thumbor_request(decision: Decision, settings: Settings, state: RequestState,
                    http_request: Any) -> RequestParameters:
    """Thumbor's RequestParameters for a decision (what its transformer reads), carrying ``state``.

    No size asked: the original is fit into MAX_WIDTH x MAX_HEIGHT (never upscaled); a larger size
    asked is clamped to the cap by Thumbor's ``execute_image_operations``."""
    params = decision.params
    crop = params.crop or (None, None, None, None)
    fit_in = params.fit_in or ""
    request = RequestParameters(
        request=http_request, debug=params.debug, meta=params.meta, trim=params.trim,
        crop_left=crop[0], crop_top=crop[1], crop_right=crop[2], crop_bottom=crop[3],
        adaptive=fit_in.startswith("adaptive-"), full="full-" in fit_in, fit_in=bool(fit_in),
        width=params.width or 0, height=params.height or 0,
        horizontal_flip=params.flip_horizontal, vertical_flip=params.flip_vertical,
        halign=params.halign, valign=params.valign, smart=params.smart,
        filters=params.thumbor_filters(), image=params.image,
    )
    request.url = decision.canonical
    request.unsafe = decision.unsafe
    setattr(request, _STATE, state)
    asked_original = request.meta or request.width == "orig" or request.height == "orig"
    if not asked_original and not request.width and not request.height and settings.max_width and settings.max_height:
        request.fit_in = True
        request.width = settings.max_width
        request.height = settings.max_height
    return request


# --- what else is read from Thumbor ------------------------------------------------------------

def known_filters(context: Any) -> dict[str, re.Pattern[str]]:
    """The filters this Thumbor runs (``FILTERS``): name -> the pattern Thumbor reads it with."""
    known = {}
    for cls in context.modules.filters or ():
        data = getattr(getattr(cls, "runnable_method", None), "filter_data", None)
        if data is not None and getattr(cls, "regex", None) is not None:
            known[data["name"]] = cls.regex
    return known


def loopback_base(context: Any) -> str:
    """``http://<this server>``: its own address when bound to one, else 127.0.0.1."""
    server = context.server
    host = getattr(server, "ip", None) or "127.0.0.1"
    if host in ("0.0.0.0", "::", "*"):  # noqa: S104 - an address we were given, not one we bind
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{int(server.port)}"


def cap_body(connection: Any, limit: int) -> None:
    """Tornado's body-size limit for the request on ``connection`` (an HTTP/1 connection's own
    method; other connections have none)."""
    if hasattr(connection, "set_max_body_size"):
        connection.set_max_body_size(limit)


def mimetype(buffer: bytes) -> str | None:
    """The MIME type Thumbor sniffs from an image's bytes (None: not an image it knows)."""
    result: str | None = BaseEngine.get_mimetype(buffer)
    return result


# --- one filters factory per process ------------------------------------------------------------

_filters_factories: dict[tuple[Any, ...], FiltersFactory] = {}


def _shared_filters_factory(filter_classes: Any) -> FiltersFactory:
    """Thumbor's ``FiltersFactory`` for these filter classes, made once per process. Thumbor's
    per-request Context makes a new one each time, which re-runs every filter class's
    ``pre_compile`` (builds and compiles its regex): about 6% of a miss's event-loop CPU, for a
    result that never changes. A factory holds only the name -> class map it builds."""
    key = tuple(filter_classes or ())
    factory = _filters_factories.get(key)
    if factory is None:
        factory = _filters_factories[key] = FiltersFactory(filter_classes)
    return factory


def share_filters_factory() -> None:
    """Make Thumbor's Context use :func:`_shared_filters_factory` (idempotent)."""
    thumbor.context.FiltersFactory = _shared_filters_factory  # type: ignore[misc, assignment]


# --- the application ---------------------------------------------------------------------------

def _handler_class(route: Any) -> Any:
    return getattr(route, "handler_class", None) or route[1]


@dataclass(frozen=True, slots=True)
class EarlyAnswer:
    """A whole 200 answer to a GET, made from the request line and headers alone: ``headers``
    (``Content-Length`` and ``Date`` are added), ``body``; ``sent(seconds, client)`` is called once
    it was handed to the connection (seconds since its headers arrived; the client's address)."""

    headers: Mapping[str, str]
    body: bytes
    sent: Callable[[float, str | None], None]


#: ``(path without the query, request headers) -> EarlyAnswer | None`` for a GET (None: the
#: request goes on to tornado's routing and request handlers)
Answerer = Callable[[str, httputil.HTTPHeaders], EarlyAnswer | None]


def etag(body: bytes) -> str:
    """The ``Etag`` tornado's handlers give a body (``RequestHandler.compute_etag``: its SHA-1)."""
    return f'"{hashlib.sha1(body).hexdigest()}"'  # noqa: S324 - an entity tag, not security


class Application(ThumborServiceApp):
    """Thumbor's application with ``image_handler`` where Thumbor's imaging route was (it takes
    every path no other route takes), request bodies capped before any handler runs, client
    addresses believed only from ``trusted_proxies``, and GETs that ``answer_early`` answers
    answered without tornado's routing or a request handler."""

    def __init__(self, context: Any, image_handler: type, handler_arguments: Mapping[str, Any], *,
                 trusted_proxies: tuple[clients.Network, ...] = (), answer_early: Answerer | None = None) -> None:
        share_filters_factory()
        self._image_route = (r"/.*", image_handler, {"context": context, **handler_arguments})
        self._trusted_proxies = trusted_proxies
        self._answer_early = answer_early
        super().__init__(context)

    def get_handlers(self) -> list[Any]:
        handlers: list[Any] = super().get_handlers()
        imaging = [index for index, route in enumerate(handlers) if _handler_class(route) is ImagingHandler]
        if len(imaging) != 1:
            raise RuntimeError(f"expected Thumbor's imaging route once among its routes, found it {len(imaging)} "
                               "times: this Thumbor release is not the one imgstack was made for")
        handlers[imaging[0]] = self._image_route
        return handlers

    def start_request(self, server_conn: Any, request_conn: Any) -> Any:
        # Tornado would buffer up to 100 MB of body before any handler runs, authenticated or not.
        # No route of ours takes a body but the events webhook, which sets its own limit once its
        # token matched (handlers/events.py). Elsewhere a stray small body is read and ignored,
        # so the client gets its proper answer (405 for a POST); a larger one is refused (400,
        # connection closed) as soon as its headers arrive.
        cap_body(request_conn, IGNORED_BODY_BYTES)
        delegate = super().start_request(server_conn, request_conn)
        if self._answer_early is not None and hasattr(request_conn, "write_headers"):
            delegate = _Early(delegate, request_conn, self._answer_early)
        connection = getattr(request_conn, "context", None)
        return delegate if connection is None else _TrustedClient(delegate, connection, self._trusted_proxies)


class _TrustedClient(httputil.HTTPMessageDelegate):
    """Sets each request's ``remote_ip`` from ``X-Forwarded-For``/``X-Real-Ip`` only when the
    connection comes from a trusted proxy (:mod:`thumbor_plugins.clients`); tornado's
    ``xheaders``, which Thumbor turns on, believes them from anyone."""

    def __init__(self, inner: Any, connection: Any, trusted: tuple[clients.Network, ...]) -> None:
        self.inner, self.connection, self.trusted = inner, connection, trusted

    def headers_received(self, start_line: Any, headers: Any) -> Any:
        address = getattr(self.connection, "address", None)
        if isinstance(address, tuple) and address:
            self.connection.remote_ip = clients.client_ip(
                str(address[0]), headers.get("X-Forwarded-For"), headers.get("X-Real-Ip"), self.trusted)
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self.inner.finish()

    def on_connection_close(self) -> None:
        self.inner.on_connection_close()


class _Early(httputil.HTTPMessageDelegate):
    """Asks ``answerer`` about each GET once its headers arrived (its client address already set
    by :class:`_TrustedClient`); writes the :class:`EarlyAnswer` it gives when the request ends,
    and passes every other request to ``inner`` (tornado's routing). A hot hit answered here costs
    the worker about a third less CPU than through a request handler (docs/decisions.md)."""

    def __init__(self, inner: Any, request_conn: Any, answerer: Answerer) -> None:
        self.inner, self.request_conn, self.answerer = inner, request_conn, answerer
        self.answer: EarlyAnswer | None = None
        self.started = 0.0

    def headers_received(self, start_line: Any, headers: Any) -> Any:
        if start_line.method == "GET":
            self.started = time.perf_counter()
            try:
                self.answer = self.answerer(start_line.path.partition("?")[0], headers)
            except Exception:  # noqa: BLE001 - the request handler answers it instead
                logger.exception("answering %s early failed", start_line.method)
            if self.answer is not None:
                return None
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        if self.answer is None:
            return self.inner.data_received(chunk)
        return None  # a GET's stray body (capped): read and ignored, as the handlers do

    def finish(self) -> None:
        answer = self.answer
        if answer is None:
            self.inner.finish()
            return
        headers = httputil.HTTPHeaders(answer.headers)
        headers["Content-Length"] = str(len(answer.body))
        headers["Date"] = httputil.format_timestamp(time.time())
        self.request_conn.write_headers(httputil.ResponseStartLine("", 200, "OK"), headers, answer.body)
        self.request_conn.finish()
        answer.sent(time.perf_counter() - self.started, getattr(self.request_conn.context, "remote_ip", None))

    def on_connection_close(self) -> None:
        if self.answer is None:
            self.inner.on_connection_close()


# --- the imaging handler -----------------------------------------------------------------------

class ImagingAdapter(ImagingHandler):
    """Thumbor's imaging handler, as the base of our image handler. A subclass implements
    :meth:`serve` (the whole request) and :meth:`report` (once it was answered); it has
    :attr:`service_settings`, :attr:`known_filters` and :attr:`state`, answers refusals with
    :meth:`refuse` and misses with :meth:`render`.

    Thumbor makes a per-request Context (its filters factory, its storages: 15% of a hit's CPU)
    for every request; here only a render makes one. Until then Thumbor's prepare/on_finish see no
    ``context`` and skip their render metrics."""

    service_settings: Settings
    known_filters: Mapping[str, re.Pattern[str]] | None
    _state: RequestState
    #: Thumbor's request, once a render began
    _rendering: RequestParameters | None = None

    def initialize(self, context: Any, known_filters: Mapping[str, re.Pattern[str]] | None = None) -> None:  # noqa: D401 - tornado hook
        self._state = RequestState()
        self.server_context = context
        # (not `settings`: tornado's handlers have their own)
        self.service_settings = settings_of(context)
        self.known_filters = known_filters

    # --- for the subclass

    async def serve(self) -> None:
        """The whole request (Thumbor's ``get``/``head`` land here)."""
        raise NotImplementedError

    def report(self) -> None:
        """Called once the request was answered."""

    @property
    def state(self) -> RequestState:
        return self._state if self._rendering is None else state_of(self._rendering)

    @property
    def answered(self) -> bool:
        """The answer was sent (or a render past its time limit was answered meanwhile)."""
        return bool(self._finished)

    @property
    def bytes_sent(self) -> int | None:
        """Body bytes of the answer, where known (Thumbor's render metrics read them too)."""
        return getattr(self, "_response_length", None)

    @bytes_sent.setter
    def bytes_sent(self, length: int) -> None:
        self._response_length = length

    @property
    def content_type_sent(self) -> str | None:
        return self._headers.get("Content-Type")

    @property
    def rendered_stand_in(self) -> bool:
        """The render is a stand-in (the fallback image, a detection error): not stored, and
        cached for MAX_AGE_TEMP_IMAGE only."""
        request = self._rendering
        return request is not None and bool(request.prevent_result_storage or request.detection_error)

    def refuse(self, status: int, reason: str, message: str) -> None:
        """Refuse the request; ``reason`` is a short word for logs and metrics. ``message`` must
        not carry the signature (the access log has the redacted path)."""
        self._state.rejection = reason
        self.set_header("Cache-Control", "no-store")
        self._error(status, f"{reason}: {message}")

    async def render(self) -> None:
        """Thumbor's pipeline for the state's decision: load, transform, encode, answer, store."""
        decision = self._state.decision
        assert decision is not None
        request = thumbor_request(decision, self.service_settings, self._state, self.request)
        # Thumbor's per-request Context and start time, as its initialize/prepare hooks make them
        super().initialize(self.server_context)
        super().prepare()
        self.context.request = self._rendering = request
        await self.execute_image_operations()

    # --- Thumbor's and tornado's hooks

    async def check_image(self, kwargs: dict[str, Any]) -> None:  # noqa: ARG002 - we parse the raw path
        await self.serve()

    def _error(self, status: int, msg: str | None = None) -> None:
        """Every error answer (ours and Thumbor's pipeline's): the status with a short plain-text
        reason, never the request's text (Thumbor's messages quote the URL: logged only)."""
        if msg is not None:
            logger.warning(msg)
        if self._finished:  # already answered (a render past its time limit): nothing to send
            return
        self.set_status(status)
        self._plain_error(status, self.state.rejection)

    def write_error(self, status_code: int, **kwargs: Any) -> None:  # noqa: ARG002 - tornado's hook
        """Tornado's own errors (405, an exception's 500) in the same plain text."""
        self.set_header("Cache-Control", "no-store")
        self._plain_error(status_code, None)

    def _plain_error(self, status: int, reason: str | None) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(public_text(status, reason) if self.request.method != "HEAD" else None)

    def log_exception(self, *exc_info: Any) -> None:
        if not hasattr(self, "context"):  # Thumbor's reads its Context: none before a render
            tornado.web.RequestHandler.log_exception(self, *exc_info)
            return
        super().log_exception(*exc_info)

    def compute_etag(self) -> str | None:
        if not self.service_settings.enable_etags:
            return None
        etag: str | None = super(ImagingHandler, self).compute_etag()
        return etag

    def define_image_type(self, context: Any, result: Any) -> tuple[str, str]:
        """The negotiated format (:attr:`Decision.format`) where the engine can write it."""
        decision = self.state.decision
        request = context.request
        if result is not None or decision is None or request.meta or request.format:
            defined: tuple[str, str] = super().define_image_type(context, result)
            return defined
        engine = request.engine
        extension = engine.extension
        if not engine.is_multiple():
            if decision.format == "avif" and engine.can_auto_convert_to_avif():
                extension = ".avif"
            elif decision.format == "webp" and engine.can_convert_to_webp():
                extension = ".webp"
        return extension, CONTENT_TYPE.get(extension, CONTENT_TYPE[".jpg"])

    async def _write_results_to_client(self, results: Any, content_type: str) -> None:
        loaded_at = self.state.loaded_at
        if loaded_at is not None:
            observe.rendered(time.perf_counter() - loaded_at)
        if self._finished:  # answered 503 meanwhile (render time limit); Thumbor stores it next
            return
        await super()._write_results_to_client(results, content_type)

    def on_finish(self) -> None:
        self.report()
        if self._rendering is not None:
            # Thumbor's own metrics are about renders; a hit or a refusal made none
            super().on_finish()


# --- Thumbor's command line (thumbor_plugins.serve) ----------------------------------------------

def checked_settings(arguments: Sequence[str]) -> Settings:
    """The settings a Thumbor started with ``arguments`` (its command line) runs with: the config
    file found as Thumbor finds it, the key of ``--keyfile``; validated (SettingError)."""
    from thumbor.console import get_server_parameters
    from thumbor.server import get_config

    server = get_server_parameters(list(arguments))
    settings = Settings.of(get_config(server.config_path, server.use_environment), security_key=server.security_key)
    settings.validate()
    return settings


def run_thumbor(arguments: Sequence[str], handoff: socket.socket | None = None) -> None:
    """Thumbor's own server entry point (one worker, this process), until it stops, on
    :func:`new_event_loop`'s loop (Tornado runs on whatever asyncio loop is current). With
    ``handoff`` (a worker of :class:`thumbor_plugins.serve.Balancer`), Thumbor's HTTP server
    binds nothing and serves the connections that arrive on that Unix socket instead (the name
    ``thumbor.server.run_server`` replaced)."""
    import thumbor.server
    from thumbor.server import main

    if handoff is not None:
        thumbor.server.run_server = functools.partial(_handed_off_server, handoff)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    # once serving starts, what start-up made (modules, Thumbor's importer and filters, OpenCV,
    # botocore: about 68,000 objects) lives as long as the process: keep it out of the
    # collector's full passes, which spent 20-36 ms on them each time, on the event loop
    loop.call_soon(gc.freeze)
    main(list(arguments))


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed (not on Windows), else asyncio's: a cache miss
    spends some 9 ms of the worker's event loop on HTTP and four S3 requests, and uvloop takes
    about a ms off that (docs/decisions.md)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


# --- connections handed over by the supervisor (thumbor_plugins.serve.Balancer) -------------


class HandedOffServer(HTTPServer):
    """Thumbor's HTTP server (``xheaders``, as ``thumbor.server.run_server`` makes it) serving the
    connections the supervisor sends over ``link`` rather than accepting any itself; each
    connection's close is told back, so the supervisor knows which worker is least busy."""

    link: socket.socket

    def receive(self, fd: int, events: int) -> None:  # noqa: ARG002 - tornado's handler signature
        while True:
            try:
                _, fds, _, _ = socket.recv_fds(self.link, 16, 16, socket.MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                fds = []
            if not fds:  # the supervisor is gone (this worker stops with it) or sent nothing
                tornado.ioloop.IOLoop.current().remove_handler(self.link.fileno())
                return
            for connection_fd in fds:
                self._serve(socket.socket(fileno=connection_fd))

    def _serve(self, connection: socket.socket) -> None:
        connection.setblocking(False)
        try:
            address = connection.getpeername()
        except OSError:  # the client left while its connection was handed over
            connection.close()
            self.tell(CLOSED)
            return
        stream = tornado.iostream.IOStream(
            connection, max_buffer_size=self.max_buffer_size, read_chunk_size=self.read_chunk_size
        )
        self.handle_stream(stream, address)

    def on_close(self, server_conn: Any) -> None:
        super().on_close(server_conn)
        self.tell(CLOSED)

    def tell(self, what: bytes) -> None:
        try:
            self.link.send(what)
        except OSError:  # the supervisor is gone or its buffer is full: it only balances less well
            pass

    def stop(self) -> None:
        """Stop taking connections (Thumbor's SIGTERM handling calls this)."""
        try:
            tornado.ioloop.IOLoop.current().remove_handler(self.link.fileno())
        except (KeyError, ValueError):
            pass
        super().stop()


def _handed_off_server(link: socket.socket, application: Any, context: Any) -> HandedOffServer:  # noqa: ARG001
    """``thumbor.server.run_server``'s replacement for a worker given ``link``."""
    server = HandedOffServer(application, xheaders=True)
    server.link = link
    link.setblocking(False)
    loop = tornado.ioloop.IOLoop.current()
    loop.add_handler(link.fileno(), server.receive, tornado.ioloop.IOLoop.READ)
    loop.add_callback(server.tell, READY)  # once the loop runs: connections are served at once
    return server

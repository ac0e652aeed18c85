"""Thumbor application class: ``APP_CLASS = 'thumbor_plugins.app.App'``.

Replaces Thumbor's imaging handler with :class:`ImageHandler`, the adapter between tornado/Thumbor
and the pure request pipeline (:mod:`thumbor_plugins.pipeline`):

1. ``pipeline.decide`` verifies the signature, the filters and the expiry on the raw path,
   applies the presets rule and locates the source, before the result storage, the loader or
   anything else is touched (403 / 410 / 400 / 404), and names the negotiated result;
2. admission: at most ``IMGSTACK_MAX_CONCURRENT_REQUESTS`` image requests per worker (503);
3. a stored result is served without Thumbor's pipeline; a miss renders once per key
   (singleflight) through Thumbor's, within ``IMGSTACK_RENDER_TIMEOUT``;
4. ``pipeline.cache_control`` / ``pipeline.varies`` set ``Cache-Control`` and ``Vary``.

Every Thumbor internal it relies on is named in ``tests/test_thumbor_internals.py``.

:func:`validate` refuses a bad configuration at start-up.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import hashlib
import logging
import re
import time
from typing import Any

import tornado.web
from tornado import httputil
from thumbor.app import ThumborServiceApp
from thumbor.context import RequestParameters
from thumbor.engines import BaseEngine
from thumbor.handlers.imaging import ImagingHandler

from . import config as _config  # noqa: F401 - defines our settings before Thumbor reads them
from . import clients, observe, pipeline, presets, result_storage, singleflight
from .urls import Params, Signer

logger = logging.getLogger("imgstack")

_DEFAULT_KEYS = {"", "MY_SECURE_KEY"}
#: signing keys shorter than this are refused at start
MIN_KEY_LENGTH = 32
#: the largest body read (and ignored) on a route that takes none
IGNORED_BODY_BYTES = 64 * 1024


class ConfigError(RuntimeError):
    """The configuration cannot run safely; the message says which setting to fix."""


def _keys(context: Any) -> list[str]:
    primary = context.server.security_key or context.config.SECURITY_KEY
    if isinstance(primary, bytes):
        primary = primary.decode()
    extra = context.config.IMGSTACK_VERIFY_KEYS or ()
    if isinstance(extra, str):
        extra = [k.strip() for k in extra.split(",")]
    return [primary, *[k for k in extra if k]]


def validate(context: Any) -> None:
    config = context.config
    keys = _keys(context)
    if not keys[0] or keys[0] in _DEFAULT_KEYS:
        raise ConfigError("SECURITY_KEY is not set: refusing to start (set SECURITY_KEY to a long random secret)")
    if any(key in _DEFAULT_KEYS for key in keys[1:]):
        raise ConfigError("IMGSTACK_VERIFY_KEYS holds Thumbor's published default key: anyone could sign links")
    for name, key in [("SECURITY_KEY", keys[0])] + [("IMGSTACK_VERIFY_KEYS", key) for key in keys[1:]]:
        if len(key) < MIN_KEY_LENGTH:
            raise ConfigError(
                f"{name} holds a key of {len(key)} characters: keys this short can be guessed offline "
                f"from one signed URL; use at least {MIN_KEY_LENGTH} (openssl rand -hex 32)"
            )
    if config.IMGSTACK_SIGNATURE_ALGORITHM not in ("sha1", "sha256"):
        raise ConfigError("IMGSTACK_SIGNATURE_ALGORITHM must be sha1 or sha256")
    try:
        known = presets.load(config.IMGSTACK_PRESETS_FILE)
    except presets.PresetError as error:
        raise ConfigError(str(error)) from None
    if config.IMGSTACK_ONLY_PRESETS and not known:
        raise ConfigError("IMGSTACK_ONLY_PRESETS is on but the presets file defines no preset")
    if not config.RESULT_STORAGE_STORES_UNSAFE and config.ALLOW_UNSAFE_URL:
        logger.warning("ALLOW_UNSAFE_URL is on: anyone can make this server render anything")


def thumbor_arguments(params: Params) -> dict[str, Any]:
    """Thumbor's RequestParameters arguments for verified ``params``."""
    crop = params.crop or (None, None, None, None)
    fit_in = params.fit_in or ""
    return {
        "debug": params.debug,
        "meta": params.meta,
        "trim": params.trim,
        "crop_left": crop[0],
        "crop_top": crop[1],
        "crop_right": crop[2],
        "crop_bottom": crop[3],
        "adaptive": fit_in.startswith("adaptive-"),
        "full": "full-" in fit_in,
        "fit_in": bool(fit_in),
        "width": params.width or 0,
        "height": params.height or 0,
        "horizontal_flip": params.flip_horizontal,
        "vertical_flip": params.flip_vertical,
        "halign": params.halign,
        "valign": params.valign,
        "smart": params.smart,
        "filters": params.thumbor_filters(),
        "image": params.image,
    }


def known_filters(context: Any) -> dict[str, re.Pattern[str]]:
    """The filters this Thumbor runs (``FILTERS``): name -> the pattern Thumbor reads it with."""
    known = {}
    for cls in context.modules.filters or ():
        data = getattr(getattr(cls, "runnable_method", None), "filter_data", None)
        if data is not None and getattr(cls, "regex", None) is not None:
            known[data["name"]] = cls.regex
    return known


def _image_format(content_type: str | None) -> str | None:
    """``image/webp`` -> ``webp``; None for anything but an image."""
    if not content_type or not content_type.startswith("image/"):
        return None
    return content_type[len("image/"):].split(";", 1)[0].strip() or None


class _TrustedClient(httputil.HTTPMessageDelegate):
    """Sets each request's ``remote_ip`` from ``X-Forwarded-For``/``X-Real-Ip`` only when the
    connection comes from a trusted proxy (:mod:`thumbor_plugins.clients`); tornado's
    ``xheaders``, which Thumbor turns on, believes them from anyone."""

    def __init__(self, inner: Any, context: Any, trusted: tuple) -> None:
        self.inner, self.context, self.trusted = inner, context, trusted

    def headers_received(self, start_line: Any, headers: Any) -> Any:
        address = getattr(self.context, "address", None)
        if isinstance(address, tuple) and address:
            self.context.remote_ip = clients.client_ip(
                str(address[0]), headers.get("X-Forwarded-For"), headers.get("X-Real-Ip"), self.trusted)
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self.inner.finish()

    def on_connection_close(self) -> None:
        self.inner.on_connection_close()


class App(ThumborServiceApp):
    def __init__(self, context: Any) -> None:
        validate(context)
        self.pipeline_settings = pipeline.Settings.from_config(
            context.config, Signer(_keys(context), context.config.IMGSTACK_SIGNATURE_ALGORITHM), known_filters(context))
        try:
            self.trusted_proxies = clients.networks(context.config.IMGSTACK_TRUSTED_PROXIES)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        super().__init__(context)

    def start_request(self, server_conn: Any, request_conn: Any) -> Any:
        # Tornado would buffer up to 100 MB of body before any handler runs, authenticated or not.
        # No route of ours takes a body but the events webhook, which sets its own limit once its
        # token matched (handlers/events.py). Elsewhere a stray small body is read and ignored,
        # so the client gets its proper answer (405 for a POST); a larger one is refused (400,
        # connection closed) as soon as its headers arrive.
        if hasattr(request_conn, "set_max_body_size"):
            request_conn.set_max_body_size(IGNORED_BODY_BYTES)
        delegate = super().start_request(server_conn, request_conn)
        context = getattr(request_conn, "context", None)
        return delegate if context is None else _TrustedClient(delegate, context, self.trusted_proxies)

    def get_handlers(self) -> list:
        handlers = super().get_handlers()
        # Thumbor appends its own imaging route last; ours takes every remaining path instead
        handlers[-1] = (r"/.*", ImageHandler, {"context": self.context, "pipeline_settings": self.pipeline_settings})
        return handlers


class ImageHandler(ImagingHandler):
    imgstack: pipeline.Decision | None = None
    rejection: str | None = None
    #: True: served from the result storage; False: looked up, rendered; None: not looked up
    cache_hit: bool | None = None
    #: verified image requests this process is working on (overload protection)
    in_flight = 0
    _counted = False
    _request_parameters: RequestParameters | None = None

    def initialize(self, context: Any, pipeline_settings: pipeline.Settings) -> None:  # noqa: D401 - tornado hook
        # No per-request Context yet (Thumbor's initialize makes one, with its filters factory and
        # its storages, for every request: 15% of a hit's CPU). A render makes it: _render_context.
        # Until then Thumbor's prepare/on_finish see no ``context`` and skip their render metrics.
        self.server_context = context
        self.config = context.config
        # (not `settings`: tornado's handlers and applications have their own)
        self.pipeline_settings = pipeline_settings

    def _render_context(self, request: RequestParameters) -> None:
        """Thumbor's per-request Context and start time, as its initialize/prepare hooks make them."""
        super().initialize(self.server_context)
        super().prepare()
        self.context.request = self._request_parameters = request

    def log_exception(self, *exc_info: Any) -> None:
        if not hasattr(self, "context"):  # Thumbor's reads its Context: none before a render
            tornado.web.RequestHandler.log_exception(self, *exc_info)
            return
        super().log_exception(*exc_info)

    def compute_etag(self) -> str | None:
        return super(ImagingHandler, self).compute_etag() if self.config.ENABLE_ETAGS else None

    def reject(self, status: int, reason: str, message: str) -> None:
        """Refuse the request; ``reason`` is a short word for logs and metrics. ``message`` must
        not carry the signature (the access log has the redacted path)."""
        self.rejection = reason
        self.set_header("Cache-Control", "no-store")
        self._error(status, f"{reason}: {message}")

    def write_error(self, status_code: int, **kwargs: Any) -> None:  # noqa: ARG002 - tornado's hook
        """Tornado's own errors (405, an exception's 500) in the same plain text."""
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")
        self.finish(pipeline.public_text(status_code, None) if self.request.method != "HEAD" else None)

    def _error(self, status: int, msg: str | None = None) -> None:
        """Every error answer (ours and Thumbor's pipeline's): the status with a short plain-text
        reason, never the request's text (Thumbor's messages quote the URL: logged only)."""
        if msg is not None:
            logger.warning(msg)
        if self._finished:  # already answered (a render past its time limit): nothing to send
            return
        self.set_status(status)
        reason = self.rejection or getattr(self._request_parameters, "imgstack_rejection", None)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(pipeline.public_text(status, reason) if self.request.method != "HEAD" else None)

    async def check_image(self, kwargs: dict) -> None:  # noqa: ARG002 - we parse the raw path
        config = self.config
        try:
            decision = pipeline.decide(self.request.path, self.request.headers.get("Accept", ""), self.pipeline_settings,
                                       time.time())
        except pipeline.Refusal as refusal:
            self.reject(refusal.status, refusal.reason, str(refusal))
            return

        limit = int(config.IMGSTACK_MAX_CONCURRENT_REQUESTS or 0)
        if limit and ImageHandler.in_flight >= limit:
            self.set_header("Retry-After", "1")
            self.reject(503, "overload", f"{ImageHandler.in_flight} image requests in progress")
            return
        ImageHandler.in_flight += 1
        self._counted = True
        try:
            await self._serve(decision)
        finally:
            # released when the work is done, not when the client leaves: a client that hangs up
            # must not free a slot while its render still runs (overload bypass)
            self._release()

    async def _serve(self, decision: pipeline.Decision) -> None:
        # JSONP: the result-storage key does not name a callback, so an unsigned ?callback= would
        # be stored and served to everyone else asking for the same meta/ URL. Only the operator's
        # META_CALLBACK_NAME may wrap metadata.
        self.request.arguments.pop("callback", None)
        self.request.query_arguments.pop("callback", None)

        self.imgstack = decision
        looks_up = self._uses_result_storage()
        if looks_up and await self._serve_stored():
            return
        request = RequestParameters(request=self.request, **thumbor_arguments(decision.params))
        request.url = decision.canonical
        request.unsafe = decision.unsafe
        request.imgstack = decision
        # the lookups are ours (before the render lock and after waiting for it): Thumbor's
        # pipeline must not read the result storage a second time
        request.imgstack_looked_up = looks_up
        self._apply_size_cap(request)
        self._render_context(request)
        # identical concurrent misses render once; the others then find the stored result
        async with singleflight.shared().hold(self.imgstack.derived_key) as leader:
            if looks_up and not leader and await self._serve_stored():
                return
            self.cache_hit = False if looks_up else None
            await self._render()

    async def _render(self) -> None:
        """Thumbor's pipeline, answered 503 (Retry-After) once it has run ``IMGSTACK_RENDER_TIMEOUT``
        seconds. A thread cannot be stopped: the render goes on (at the render threads' lower
        priority), keeps its slot and its render lock until it ends, and stores its result, which
        the retry then finds."""
        budget = float(self.config.IMGSTACK_RENDER_TIMEOUT or 0)
        render = asyncio.ensure_future(self.execute_image_operations())
        if budget > 0:
            await asyncio.wait({render}, timeout=budget)
            if not render.done() and not self._finished:
                self.set_header("Retry-After", "5")
                self.reject(503, "render_timeout", f"render still running after {budget:g}s")
        await render

    def _uses_result_storage(self) -> bool:
        config = self.config
        return bool(config.RESULT_STORAGE) and (bool(config.RESULT_STORAGE_STORES_UNSAFE) or not self.imgstack.unsafe)

    async def _serve_stored(self) -> bool:
        """Answer from the result storage, without Thumbor's pipeline; False on a miss.

        A 304 when ``If-Modified-Since`` allows (Thumbor's own hit path raised on dates not in
        its one format, a 500, and wrote a body after a 304)."""
        info = self.imgstack
        stored = await result_storage.lookup(self.config, info.derived_key, info.source)
        self.cache_hit = stored is not None
        if stored is None:
            return False
        config = self.config
        if self._not_modified(stored.last_modified):
            if config.ENABLE_ETAGS:
                # the ETag the 200 would carry (Tornado's: SHA-1 of the body), as RFC 9110 asks
                self.set_header("Etag", f'"{hashlib.sha1(stored.body).hexdigest()}"')  # noqa: S324 - not security
            self.set_status(304)
            self.finish()
            return True
        if info.params.meta:
            # stored metadata: Thumbor sniffs stored bytes for an image type and calls JSON a JPEG
            content_type = "text/javascript" if config.META_CALLBACK_NAME else "application/json"
        else:
            content_type = stored.content_type or BaseEngine.get_mimetype(stored.body) or "application/octet-stream"
        self.set_header("Content-Type", content_type)
        if config.ACCESS_CONTROL_ALLOW_ORIGIN_HEADER is not False:
            self.set_header("Access-Control-Allow-Origin", config.ACCESS_CONTROL_ALLOW_ORIGIN_HEADER)
        self._response_length = len(stored.body)
        self.finish(stored.body)
        return True

    def _not_modified(self, last_modified: datetime.datetime | None) -> bool:
        """Sets ``Last-Modified``; True when the client's copy is current. ``If-None-Match``, when
        sent, is the validator that counts (RFC 9110 13.2.2): Tornado checks it against the ETag."""
        if not self.config.SEND_IF_MODIFIED_LAST_MODIFIED_HEADERS or last_modified is None:
            return False
        if last_modified.tzinfo is None:
            last_modified = last_modified.replace(tzinfo=datetime.timezone.utc)
        last_modified = last_modified.astimezone(datetime.timezone.utc).replace(microsecond=0)
        self.set_header("Last-Modified", email.utils.format_datetime(last_modified, usegmt=True))
        header = self.request.headers.get("If-Modified-Since")
        if not header or "If-None-Match" in self.request.headers:
            return False
        try:
            since = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError, IndexError, OverflowError):
            return False  # an unparsable date is ignored, as RFC 9110 asks
        if since.tzinfo is None:
            since = since.replace(tzinfo=datetime.timezone.utc)
        return last_modified <= since

    def _apply_size_cap(self, request: RequestParameters) -> None:
        """No size asked: fit the original into MAX_WIDTH x MAX_HEIGHT (never upscaled).
        A larger size asked: Thumbor clamps it to the cap in execute_image_operations."""
        config = self.config
        if request.meta or request.width == "orig" or request.height == "orig":
            return
        if not request.width and not request.height and config.MAX_WIDTH and config.MAX_HEIGHT:
            request.fit_in = True
            request.width = config.MAX_WIDTH
            request.height = config.MAX_HEIGHT

    def define_image_type(self, context: Any, result: Any) -> tuple[str, str]:
        info = self.imgstack
        if result is not None or info is None or context.request.meta or context.request.format:
            return super().define_image_type(context, result)
        engine = context.request.engine
        from thumbor.utils import CONTENT_TYPE

        extension = engine.extension
        if not engine.is_multiple():
            if info.format == "avif" and engine.can_auto_convert_to_avif():
                extension = ".avif"
            elif info.format == "webp" and engine.can_convert_to_webp():
                extension = ".webp"
        return extension, CONTENT_TYPE.get(extension, CONTENT_TYPE[".jpg"])

    async def _write_results_to_client(self, results: Any, content_type: str) -> None:
        loaded_at = getattr(self._request_parameters, "imgstack_loaded_at", None)
        if loaded_at is not None:
            observe.rendered(time.perf_counter() - loaded_at)
        if self._finished:  # answered 503 meanwhile (render time limit); Thumbor stores it next
            return
        await super()._write_results_to_client(results, content_type)

    def _release(self) -> None:
        if self._counted:
            ImageHandler.in_flight -= 1
            self._counted = False

    def on_finish(self) -> None:
        # no release here: finish() comes before the result is stored; check_image's finally
        # releases the slot when all the work has ended
        request = self._request_parameters
        status = self.get_status()
        reason = self.rejection or getattr(request, "imgstack_rejection", None)
        if reason is None and status in (502, 503, 504):
            reason = "s3_unavailable"
        observe.request_finished(
            kind="image",
            method=self.request.method or "",
            status=status,
            seconds=self.request.request_time(),
            reason=reason,
            cache_hit=self.cache_hit,
            bytes_sent=getattr(self, "_response_length", None),
            path=self.request.path,
            image_format=_image_format(self._headers.get("Content-Type")),
            client=self.request.remote_ip,
        )
        if request is not None:
            # Thumbor's own metrics are about renders; a hit or a rejection made none
            super().on_finish()

    def _cache_control(self) -> str:
        request = self._request_parameters  # None on a hit
        temporary = request is not None and bool(request.prevent_result_storage or request.detection_error)
        return pipeline.cache_control(self.imgstack, self.pipeline_settings, time.time(), temporary=temporary)

    def finish(self, chunk: Any = None) -> Any:
        self.clear_header("Server")  # no software version to anyone who asks
        if self.imgstack is not None and self.rejection is None and self._status_code in (200, 304):
            self.set_header("Cache-Control", self._cache_control())
            self.clear_header("Expires")
            if pipeline.varies(self.imgstack, self.pipeline_settings):
                self.set_header("Vary", "Accept")
            else:
                self.clear_header("Vary")
        elif self._status_code >= 400:
            self.set_header("Cache-Control", "no-store")
        return super().finish(chunk)

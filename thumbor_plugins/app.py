"""Thumbor application class: ``APP_CLASS = 'thumbor_plugins.app.App'``.

Its image handler is the adapter of the request pipeline (:mod:`thumbor_plugins.pipeline`):

1. decide: ``pipeline.decide`` verifies the signature, the filters and the expiry on the raw
   path, applies the presets rule and locates the source, before the result storage, the loader
   or anything else is touched (403 / 410 / 400 / 404), and names the negotiated result;
2. admit: at most ``IMGSTACK_MAX_CONCURRENT_REQUESTS`` image requests per worker (503);
3. answer: a stored result is served without Thumbor's pipeline; a miss renders once per key
   (singleflight) through Thumbor's, within ``IMGSTACK_RENDER_TIMEOUT`` (503);
   a GET of a result this worker holds in memory is answered before any request handler is made
   (:func:`hot_hit`), with the same answer;
4. cache policy: ``pipeline.cache_control`` / ``pipeline.varies`` set ``Cache-Control`` and
   ``Vary``; ``pipeline.not_modified`` answers 304.

Everything it needs from Thumbor goes through :mod:`thumbor_plugins.thumbor_adapter`. The settings
are validated when the application is made: a bad configuration is refused at start-up.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import re
import time
from collections.abc import Mapping
from typing import Any

from . import observe, pipeline, result_storage, singleflight, thumbor_adapter
from .s3.types import ObjectData
from .settings import Settings, settings_of


class App(thumbor_adapter.Application):
    def __init__(self, context: Any) -> None:
        settings = settings_of(context)
        settings.validate()
        known_filters = thumbor_adapter.known_filters(context)
        super().__init__(context, ImageHandler, {"known_filters": known_filters},
                         trusted_proxies=settings.trusted_proxies,
                         answer_early=functools.partial(hot_hit, context, known_filters))


def hot_hit(context: Any, known_filters: Mapping[str, re.Pattern[str]] | None, path: str,
            headers: Mapping[str, str]) -> thumbor_adapter.EarlyAnswer | None:
    """The answer to a GET of a result this worker holds in memory
    (:func:`thumbor_plugins.result_storage.held`), made before tornado's routing and request
    handlers, which cost a third of such a hit's CPU: the answer :class:`ImageHandler` gives the
    same request (the same decision, headers and body; the suite compares them), counted in the
    same metrics and access log. None for anything else, which the image handler answers:
    refusals, conditional requests (it decides the 304s), results not in memory.

    Such a hit takes no slot of ``IMGSTACK_MAX_CONCURRENT_REQUESTS``: it reads nothing and renders
    nothing, so it is answered while renders fill every slot."""
    if "If-None-Match" in headers or "If-Modified-Since" in headers:
        return None
    settings, now = settings_of(context), time.time()
    try:
        decision = pipeline.decide(path, headers.get("Accept", ""), settings, now, known_filters)
    except pipeline.Refusal:
        return None
    if not _looked_up(decision, settings):
        return None
    stored = result_storage.held(settings, decision.derived_key)
    if stored is None:
        return None
    answer = _stored_headers(decision, stored, settings) | _cache_headers(decision, settings, now, temporary=False)
    if settings.enable_etags:
        answer["Etag"] = thumbor_adapter.etag(stored.body)
    result_storage.count_held()

    def sent(seconds: float, client: str | None) -> None:
        _report_image(method="GET", status=200, seconds=seconds, reason=None, cache_hit=True,
                      bytes_sent=len(stored.body), path=path, image_format=_image_format(answer["Content-Type"]),
                      client=client)

    return thumbor_adapter.EarlyAnswer(answer, stored.body, sent)


def _looked_up(decision: pipeline.Decision, settings: Settings) -> bool:
    """Whether the image handler reads the result storage for ``decision`` itself."""
    return bool(settings.result_storage) and (settings.result_storage_stores_unsafe or not decision.unsafe)


def _stored_headers(decision: pipeline.Decision, stored: ObjectData, settings: Settings) -> dict[str, str]:
    """The headers of a stored result's answer, but for the cache policy's (:func:`_cache_headers`)
    and tornado's own (``Etag``, ``Content-Length``, ``Date``)."""
    headers = {}
    modified = pipeline.last_modified(stored.last_modified, settings)
    if modified is not None:
        headers["Last-Modified"] = email.utils.format_datetime(modified, usegmt=True)
    if decision.params.meta:
        # stored metadata: Thumbor sniffs stored bytes for an image type and calls JSON a JPEG
        headers["Content-Type"] = "text/javascript" if settings.meta_callback_name else "application/json"
    else:
        headers["Content-Type"] = (stored.content_type or thumbor_adapter.mimetype(stored.body)
                                   or "application/octet-stream")
    if settings.access_control_allow_origin_header is not None:
        headers["Access-Control-Allow-Origin"] = settings.access_control_allow_origin_header
    return headers


def _cache_headers(decision: pipeline.Decision, settings: Settings, now: float, *, temporary: bool) -> dict[str, str]:
    """``Cache-Control``, and ``Vary`` when the answer varies by ``Accept``."""
    headers = {"Cache-Control": pipeline.cache_control(decision, settings, now, temporary=temporary)}
    if pipeline.varies(decision, settings):
        headers["Vary"] = "Accept"
    return headers


def _report_image(**fields: Any) -> None:
    observe.request_finished(kind="image", **fields)


def _image_format(content_type: str | None) -> str | None:
    """``image/webp`` -> ``webp``; None for anything but an image."""
    if not content_type or not content_type.startswith("image/"):
        return None
    return content_type[len("image/"):].split(";", 1)[0].strip() or None


class ImageHandler(thumbor_adapter.ImagingAdapter):
    #: verified image requests this process is working on (overload protection)
    in_flight = 0
    _counted = False

    async def serve(self) -> None:
        settings = self.service_settings
        try:
            decision = pipeline.decide(self.request.path, self.request.headers.get("Accept", ""), settings,
                                       time.time(), self.known_filters)
        except pipeline.Refusal as refusal:
            self.refuse(refusal.status, refusal.reason, str(refusal))
            return
        limit = settings.max_concurrent_requests
        if limit and ImageHandler.in_flight >= limit:
            self.set_header("Retry-After", "1")
            self.refuse(503, "overload", f"{ImageHandler.in_flight} image requests in progress")
            return
        ImageHandler.in_flight += 1
        self._counted = True
        try:
            await self._answer(decision)
        finally:
            # released when the work is done, not when the client leaves: a client that hangs up
            # must not free a slot while its render still runs (overload bypass)
            self._release()

    async def _answer(self, decision: pipeline.Decision) -> None:
        # JSONP: the result-storage key does not name a callback, so an unsigned ?callback= would
        # be stored and served to everyone else asking for the same meta/ URL. Only the operator's
        # META_CALLBACK_NAME may wrap metadata.
        self.request.arguments.pop("callback", None)
        self.request.query_arguments.pop("callback", None)

        settings, state = self.service_settings, self.state
        state.decision = decision
        # the lookups are ours (before the render lock and after waiting for it): Thumbor's
        # pipeline must not read the result storage a second time
        state.looked_up = _looked_up(decision, settings)
        if state.looked_up and await self._serve_stored(decision):
            return
        # identical concurrent misses render once; the others then find the stored result
        async with singleflight.shared().hold(decision.derived_key) as leader:
            if state.looked_up and not leader and await self._serve_stored(decision):
                return
            state.cache_hit = False if state.looked_up else None
            await self._render_in_time()

    async def _render_in_time(self) -> None:
        """Thumbor's pipeline, answered 503 (Retry-After) once it has run ``IMGSTACK_RENDER_TIMEOUT``
        seconds. A thread cannot be stopped: the render goes on (at the render threads' lower
        priority), keeps its slot and its render lock until it ends, and stores its result, which
        the retry then finds."""
        budget = self.service_settings.render_timeout
        render = asyncio.ensure_future(self.render())
        if budget > 0:
            await asyncio.wait({render}, timeout=budget)
            if not render.done() and not self.answered:
                self.set_header("Retry-After", "5")
                self.refuse(503, "render_timeout", f"render still running after {budget:g}s")
        await render

    async def _serve_stored(self, decision: pipeline.Decision) -> bool:
        """Answer from the result storage, without Thumbor's pipeline; False on a miss.

        A 304 when ``If-Modified-Since`` allows (Thumbor's own hit path raised on dates not in
        its one format, a 500, and wrote a body after a 304)."""
        settings = self.service_settings
        stored = await result_storage.lookup(self.server_context.config, decision.derived_key, decision.source)
        self.state.cache_hit = stored is not None
        if stored is None:
            return False
        headers = _stored_headers(decision, stored, settings)
        modified = pipeline.last_modified(stored.last_modified, settings)
        if modified is not None and pipeline.not_modified(modified, self.request.headers):
            self.set_header("Last-Modified", headers["Last-Modified"])
            if settings.enable_etags:
                # the ETag the 200 would carry (Tornado's: SHA-1 of the body), as RFC 9110 asks
                self.set_header("Etag", thumbor_adapter.etag(stored.body))
            self.set_status(304)
            self.finish()
            return True
        for name, value in headers.items():
            self.set_header(name, value)
        self.bytes_sent = len(stored.body)
        self.finish(stored.body)
        return True

    def _release(self) -> None:
        if self._counted:
            ImageHandler.in_flight -= 1
            self._counted = False

    def finish(self, chunk: Any = None) -> Any:
        self.clear_header("Server")  # no software version to anyone who asks
        state, status = self.state, self.get_status()
        if state.decision is not None and state.rejection is None and status in (200, 304):
            self.clear_header("Expires")
            self.clear_header("Vary")
            for name, value in _cache_headers(state.decision, self.service_settings, time.time(),
                                              temporary=self.rendered_stand_in).items():
                self.set_header(name, value)
        elif status >= 400:
            self.set_header("Cache-Control", "no-store")
        return super().finish(chunk)

    def report(self) -> None:
        # no release here: finish() comes before the result is stored; serve's finally releases
        # the slot when all the work has ended
        state, status = self.state, self.get_status()
        reason = state.rejection
        if reason is None and status in (502, 503, 504):
            reason = "s3_unavailable"
        _report_image(
            method=self.request.method or "",
            status=status,
            seconds=self.request.request_time(),
            reason=reason,
            cache_hit=state.cache_hit,
            bytes_sent=self.bytes_sent,
            path=self.request.path,
            image_format=_image_format(self.content_type_sent),
            client=self.request.remote_ip,
        )

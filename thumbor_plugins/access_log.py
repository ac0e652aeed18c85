"""Structured access log: one JSON line per request on the ``imgstack.access`` logger.

Fields: ``time`` (UTC, ISO 8601), ``method``, ``path`` (signature redacted), ``kind``, ``status``,
``duration_ms``, ``cache_hit`` (true/false, null when no result-storage lookup happened),
``format`` (the image format sent: jpeg, png, webp, avif, gif, ...; null for anything else),
``bytes`` (body bytes sent, null when unknown), ``reason`` (rejection reason word, or null),
``client`` (the client's address; ``X-Forwarded-For`` counts only from ``IMGSTACK_TRUSTED_PROXIES``).
Never logged: the signature, query strings, headers (so no ``Authorization``, tokens or keys).

Where the lines go: Thumbor configures the root logger from ``--log-level`` (``warning`` in the
embedded stack and in most deployments), which would drop INFO lines. So, on first use, when
nobody configured ``imgstack.access`` (no handler on it, e.g. from ``THUMBOR_LOG_CONFIG``), this
module gives it its own handler that writes the bare JSON line at INFO — to stderr, or appended to
``IMGSTACK_ACCESS_LOG_FILE`` (``imgstack dev``: ``<data dir>/access.log``) — and stops it from
propagating (otherwise a root handler would print it a second time, wrapped in Thumbor's format).
An operator who wants the lines elsewhere configures the logger in ``THUMBOR_LOG_CONFIG``; that
configuration is then left alone. ``IMGSTACK_ACCESS_LOG = False`` turns the log off.

Tornado's own access log (``tornado.access``: 4xx at WARNING, 5xx at ERROR, so it is printed even
at ``--log-level=warning``) writes the request URI, signature and query string included: a 502 on
a valid link would put a working capability in the log. :func:`install_tornado_filter` redacts
those lines the same way; while this log is on, they are not written at all (this log has every
request already, and they would be plain text in the middle of the JSON lines).
"""

from __future__ import annotations

import datetime
import json
import logging
import logging.handlers
import re
import sys

__all__ = ["LOGGER_NAME", "configure", "install_tornado_filter", "line", "log", "redact_path"]

LOGGER_NAME = "imgstack.access"
REDACTED = "<redacted>"

_logger = logging.getLogger(LOGGER_NAME)
_configured = False
_file: str | None = None


def configure(file: str | None) -> None:
    """Where the lines go when nobody configured the logger: appended to ``file``, else stderr.
    Tornado's own access lines are not written from then on (see the module docstring)."""
    global _file
    _file = file or None
    logging.getLogger("tornado.access").setLevel(logging.CRITICAL + 1)


def _ensure_handler() -> None:
    global _configured
    if _configured:
        return
    _configured = True
    if _logger.handlers:
        return  # configured by the operator (THUMBOR_LOG_CONFIG): theirs to route
    # WatchedFileHandler: reopens the file after logrotate moved it; each line is one append
    handler = logging.handlers.WatchedFileHandler(_file) if _file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    _logger.addHandler(handler)
    _logger.setLevel(logging.INFO)
    _logger.propagate = False


#: a segment shaped like a signature (base64url of an HMAC-SHA1 or -SHA256, padded or not)
_SIGNATURE_LIKE = re.compile(r"[A-Za-z0-9_-]{27}=?|[A-Za-z0-9_-]{43}=?")
_ABSOLUTE_FORM = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/]*")


def redact_path(path: str, kind: str) -> str:
    """``path`` without its signature. An image path's first segment is the signature (or
    ``unsafe``): it is replaced whatever it holds, so that neither a valid signature nor one that
    is merely close to valid is ever written; so is any other segment shaped like one (a signed
    link inside a filter's argument, say). An absolute-form request target
    (``GET http://host/<signature>/...``) loses its scheme and host first. The query string is
    dropped."""
    path = path.split("?", 1)[0]
    absolute = _ABSOLUTE_FORM.match(path)
    if absolute:
        path = path[absolute.end():] or "/"
    if kind != "image":
        return path
    head, sep, rest = path.lstrip("/").partition("/")
    if not head and not rest:
        return path
    if head != "unsafe":
        head = REDACTED
    rest = "/".join(REDACTED if _SIGNATURE_LIKE.fullmatch(part) else part for part in rest.split("/"))
    return "/" + head + sep + rest


#: first path segments of our non-image routes (everything else is an image path)
_NOT_IMAGE = {"healthcheck", "metrics", "events"}


def _guess_kind(path: str) -> str:
    return "other" if path.lstrip("/").split("/", 1)[0] in _NOT_IMAGE else "image"


_SUMMARY = re.compile(r"[A-Z]+ /")


class _TornadoRedactor(logging.Filter):
    """Rewrites tornado.access records (``"%d %s %.2fms"``) and tornado.general HTTP error
    records (``"%d %s: ..."``), whose second argument is ``"GET /uri (ip)"``, so that they carry
    the redacted path."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 2 and isinstance(args[1], str) and _SUMMARY.match(args[1]):
            method, _, rest = args[1].partition(" ")
            uri, paren, client = rest.rpartition(" (")
            if not paren:
                uri, client = rest, ""
            path = uri.split("?", 1)[0]
            summary = f"{method} {redact_path(path, _guess_kind(path))}" + (f" ({client}" if paren else "")
            record.args = (args[0], summary, *args[2:])
        return True


_tornado_filter = _TornadoRedactor()


def install_tornado_filter() -> None:
    """Redact signatures from tornado's access and HTTP-error log lines (idempotent)."""
    for name in ("tornado.access", "tornado.general"):
        tornado_logger = logging.getLogger(name)
        if _tornado_filter not in tornado_logger.filters:
            tornado_logger.addFilter(_tornado_filter)


def line(
    *,
    kind: str,
    method: str,
    status: int,
    seconds: float,
    reason: str | None = None,
    cache_hit: bool | None = None,
    bytes_sent: int | None = None,
    path: str = "",
    image_format: str | None = None,
    client: str | None = None,
) -> str:
    """The JSON text of one access-log line."""
    now = datetime.datetime.now(datetime.UTC)
    return json.dumps(
        {
            "time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "method": method,
            "path": redact_path(path, kind),
            "kind": kind,
            "status": int(status),
            "duration_ms": round(seconds * 1000.0, 2),
            "cache_hit": cache_hit,
            "format": image_format,
            "bytes": bytes_sent,
            "reason": reason,
            "client": client,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def log(**fields) -> None:  # noqa: ANN003 - the keyword arguments of :func:`line`
    _ensure_handler()
    if _logger.isEnabledFor(logging.INFO):
        _logger.info(line(**fields))

"""Operations pieces without a server: signature redaction, the metrics token, the hooks' contract."""

from __future__ import annotations

import json
import logging

import pytest

from thumbor_plugins import access_log, metrics, observe
from thumbor_plugins.handlers.metrics import authorized

SIGNATURE = "nN3Vv7Dn8yEmTAlKj9a3iN4n5tQ="


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"/{SIGNATURE}/300x200/smart/images/a.jpg", "/<redacted>/300x200/smart/images/a.jpg"),
        (f"/{SIGNATURE}/images/a.jpg?token=x", "/<redacted>/images/a.jpg"),
        ("/AAAA/images/a.jpg", "/<redacted>/images/a.jpg"),  # a wrong or partial signature too
        (f"/{SIGNATURE}", "/<redacted>"),
        ("/unsafe/300x200/images/a.jpg", "/unsafe/300x200/images/a.jpg"),
        ("/", "/"),
        # an absolute-form request line: the signature is still the first segment of the path
        (f"http://img.example.com/{SIGNATURE}/300x200/images/a.jpg", "/<redacted>/300x200/images/a.jpg"),
        (f"https://h:8888/{SIGNATURE}", "/<redacted>"),
        # a signature anywhere else: a signed link inside a filter, a segment of the key
        (f"/{SIGNATURE}/filters:watermark(images/{SIGNATURE}/w.png,0,0,0)/images/a.jpg",
         "/<redacted>/filters:watermark(images/<redacted>/w.png,0,0,0)/images/a.jpg"),
        (f"/{SIGNATURE}/images/{SIGNATURE[:-1]}/a.jpg", "/<redacted>/images/<redacted>/a.jpg"),
        ("/unsafe/images/" + "k" * 43 + "=/a.jpg", "/unsafe/images/<redacted>/a.jpg"),
    ],
)
def test_should_never_log_the_signature_of_an_image_path(path, expected) -> None:
    assert access_log.redact_path(path, "image") == expected


def test_non_image_routes_are_logged_as_they_are() -> None:
    assert access_log.redact_path("/healthcheck/ready", "health") == "/healthcheck/ready"


def test_access_line_has_the_documented_fields_and_no_signature() -> None:
    text = access_log.line(kind="image", method="GET", status=403, seconds=0.0123, reason="bad_signature",
                           cache_hit=None, bytes_sent=None, path=f"/{SIGNATURE}/10x10/images/a.jpg")
    entry = json.loads(text)
    assert set(entry) == {"time", "method", "path", "kind", "status", "duration_ms", "cache_hit", "format", "bytes",
                          "reason", "client"}
    assert entry["status"] == 403 and entry["reason"] == "bad_signature" and entry["duration_ms"] == 12.3
    assert SIGNATURE not in text


def test_should_redact_the_signature_from_tornado_access_log_lines() -> None:
    access_log.install_tornado_filter()
    record = logging.LogRecord("tornado.access", logging.ERROR, __file__, 1, "%d %s %.2fms",
                               (502, f"GET /{SIGNATURE}/10x10/images/a.jpg?x=1 (10.0.0.1)", 3.0), None)
    for log_filter in logging.getLogger("tornado.access").filters:
        log_filter.filter(record)
    message = record.getMessage()
    assert SIGNATURE not in message
    assert message == "502 GET /<redacted>/10x10/images/a.jpg (10.0.0.1) 3.00ms"


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer s3cret-token", True),
        ("bearer s3cret-token", True),
        ("Bearer s3cret-tokeN", False),
        ("Bearer s3cret", False),
        ("Basic s3cret-token", False),
        ("s3cret-token", False),
        ("", False),
        (None, False),
    ],
)
def test_metrics_token_must_be_a_matching_bearer(header, ok) -> None:
    assert authorized(header, "s3cret-token") is ok


def test_metrics_are_open_without_a_token() -> None:
    assert authorized(None, None) and authorized(None, "")


def test_hooks_never_raise_even_with_nonsense() -> None:
    observe.request_finished(kind="weird", method="GET", status="not a number", seconds=-1)  # type: ignore[arg-type]
    observe.s3_fetch(float("nan"), -5)
    observe.warm_queue_depth(-1)


def test_unknown_kinds_are_counted_as_other() -> None:
    before = metrics.REQUESTS.labels("other", "200")._value.get()
    observe.request_finished(kind="weird", method="GET", status=200, seconds=0.001)
    assert metrics.REQUESTS.labels("other", "200")._value.get() == before + 1


# --- the client's address: X-Forwarded-For only from trusted proxies ------------------------------

@pytest.mark.parametrize(("peer", "forwarded", "real", "trusted", "expected"), [
    ("203.0.113.9", "1.2.3.4", None, "", "203.0.113.9"),  # nobody trusted: the header is ignored
    ("203.0.113.9", "1.2.3.4", "5.6.7.8", "10.0.0.0/8", "203.0.113.9"),  # not from a proxy: ignored
    ("10.0.0.2", "198.51.100.7", None, "10.0.0.0/8", "198.51.100.7"),
    # a client's own X-Forwarded-For ("6.6.6.6") comes first; the rightmost untrusted hop counts
    ("10.0.0.2", "6.6.6.6, 198.51.100.7, 10.0.0.3", None, "10.0.0.0/8", "198.51.100.7"),
    ("10.0.0.2", None, "198.51.100.8", "10.0.0.2", "198.51.100.8"),
    ("10.0.0.2", "not-an-ip", None, "10.0.0.0/8", "10.0.0.2"),
    ("::1", "2001:db8::1", None, "::1", "2001:db8::1"),
])
def test_should_trust_x_forwarded_for_only_from_configured_proxies(peer, forwarded, real, trusted, expected) -> None:
    from thumbor_plugins.clients import client_ip, networks

    assert client_ip(peer, forwarded, real, networks(trusted)) == expected


def test_a_bad_trusted_proxy_entry_is_a_configuration_error() -> None:
    from thumbor_plugins.clients import networks

    with pytest.raises(ValueError, match="not-a-network"):
        networks("10.0.0.0/8, not-a-network")

"""``compose/nginx/cache.conf``, the cache in front of Thumbor: it keys on the Accept class, never
stores a private response, balances replicas and retries only idempotent requests. Its maps are
evaluated here; the real conf runs under a local nginx where one is installed (``integration``)."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request

import pytest

from thumbor_plugins import embedded

from .. import local_nginx
from .conftest import NGINX_CONF


def nginx_map(conf: str, target: str) -> tuple[str, list[tuple[str, str]], str]:
    """(source, [(pattern, value)...], default) of ``map <source> $<target> {...}``."""
    pattern = r"map\s+(\S+)\s+\$" + re.escape(target) + r"\s*\{(?P<body>.*?)\n\}"
    match = re.search(pattern, conf, re.S)
    assert match, f"no map for ${target}"
    entries, default = [], None
    for line in match.group("body").splitlines():
        line = line.split("#", 1)[0].strip() if not line.strip().startswith('"') else line.strip()
        if not line:
            continue
        entry = re.fullmatch(r'(?P<key>"[^"]*"|\S+)\s+(?P<value>"[^"]*"|\S+);', line)
        assert entry, line
        key, value = (part.strip('"') for part in entry.group("key", "value"))
        if key == "default":
            default = value
        else:
            entries.append((key, value))
    return match.group(1).strip('"'), entries, default


def evaluate_map(entries, default, subject: str) -> str:
    """nginx map semantics for our maps: exact strings first, then regexes in order."""
    for key, value in entries:
        if not key.startswith("~") and key == subject:
            return value
    for key, value in entries:
        if key.startswith("~*") and re.search(key[2:], subject, re.I):
            return value
        if key.startswith("~") and not key.startswith("~*") and re.search(key[1:], subject):
            return value
    return default


@pytest.fixture(scope="module")
def nginx_conf() -> str:
    return NGINX_CONF.read_text()


def accept_class(conf: str, accept: str) -> str:
    _, avif, avif_default = nginx_map(conf, "imgstack_accepts_avif")
    _, webp, webp_default = nginx_map(conf, "imgstack_accepts_webp")
    _, classes, default = nginx_map(conf, "imgstack_accept_class")
    subject = (f"{evaluate_map(avif, avif_default, accept)}:"
               f"{evaluate_map(webp, webp_default, accept)}")
    return evaluate_map(classes, default, subject)


def test_cache_key_includes_the_accept_class(nginx_conf):
    keys = re.findall(r"^\s*proxy_cache_key\s+(.+);", nginx_conf, re.M)
    assert len(keys) == 1
    assert "$imgstack_accept_class" in keys[0]
    assert "$request_uri" in keys[0]
    source, _, _ = nginx_map(nginx_conf, "imgstack_accepts_avif")
    assert source == "$http_accept"


@pytest.mark.parametrize(("accept", "expected"), [
    ("image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8", "avif+webp"),  # Chrome
    ("image/webp,*/*", "webp"),
    ("image/avif,*/*", "avif"),
    ("image/png,image/*;q=0.8,*/*;q=0.5", "other"),
    ("", "other"),
    ("IMAGE/WEBP", "webp"),
])
def test_accept_header_classes(nginx_conf, accept, expected):
    assert accept_class(nginx_conf, accept) == expected


def test_thumbor_sees_the_normalised_accept(nginx_conf):
    assert re.search(r"proxy_set_header\s+Accept\s+\$imgstack_accept_normalized;", nginx_conf)
    _, entries, default = nginx_map(nginx_conf, "imgstack_accept_normalized")
    for cls in ("avif+webp", "avif", "webp", "other"):
        normalized = evaluate_map(entries, default, cls)
        # a request carrying the normalised Accept falls in the same class again
        assert accept_class(nginx_conf, normalized) == cls


@pytest.mark.parametrize(("cache_control", "stored"), [
    ("public, max-age=86400", True),
    ("public, max-age=31536000, immutable", True),
    ("max-age=600, public", True),
    ("private, max-age=120", False),
    ("private", False),
    ("public, private, max-age=60", False),
    ("no-store", False),
    ("public, no-cache", False),
    ("max-age=600", False),
    ("", False),
    ("publicity=1", False),
])
def test_only_public_responses_are_stored(nginx_conf, cache_control, stored):
    assert re.search(r"^\s*proxy_no_cache\s+\$imgstack_no_store;", nginx_conf, re.M)
    source, entries, default = nginx_map(nginx_conf, "imgstack_no_store")
    assert source == "$upstream_http_cache_control"
    assert evaluate_map(entries, default, cache_control) == ("0" if stored else "1")


def test_cache_honours_vary_and_bounds_lifetime(nginx_conf):
    ignored = re.search(r"^\s*proxy_ignore_headers\s+([^;]+);", nginx_conf, re.M).group(1).split()
    assert "Vary" not in ignored and "Set-Cookie" not in ignored
    # Cache-Control is ignored for the lifetime only; then the no-store map is the sole guard,
    # so it must be there (checked above) and the lifetime must be short.
    valid = re.findall(r"^\s*proxy_cache_valid\s+([^;]+);", nginx_conf, re.M)
    assert valid == ["200 10m"]
    assert re.search(r"location \^~ /events/\s*\{\s*return 404;", nginx_conf)


def test_the_cache_balances_and_retries_only_idempotent_requests() -> None:
    conf = NGINX_CONF.read_text()
    public = conf.split("listen 8081;")[0]
    assert re.search(r"server thumbor:8888 resolve max_fails=\d+ fail_timeout=\d+s;", conf)
    assert re.search(r"^\s*keepalive \d+;", conf, re.M)
    retry = re.search(r"proxy_next_upstream ([^;]+);", public).group(1).split()
    assert retry == ["error", "timeout", "http_502", "http_503", "http_504"]
    assert "non_idempotent" not in conf  # a POST is never sent twice
    internal = conf.split("listen 8081;")[1]
    assert "location = /events/minio" in internal and "proxy_next_upstream off;" in internal
    assert re.search(r"location \^~ /events/\s*\{\s*return 404;", public)


@pytest.mark.integration
def test_nginx_conf_really_caches_only_public(tmp_path):
    """The real conf in a real nginx, Thumbor replaced by a tiny HTTP server (where nginx is)."""
    if local_nginx.NGINX is None:
        pytest.skip("no nginx binary on this machine (apt-get install nginx-light to run this)")
    import http.server
    import threading

    hits: dict[str, int] = {}

    class Upstream(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits[self.path] = hits.get(self.path, 0) + 1
            body = f"{hits[self.path]} {self.headers.get('Accept')}".encode()
            self.send_response(200)
            scope = "private" if "private" in self.path else "public"
            self.send_header("Cache-Control", f"{scope}, max-age=60")
            self.send_header("Vary", "Accept")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port, internal = embedded.free_port(), embedded.free_port()
    process = local_nginx.start(tmp_path, [f"127.0.0.1:{upstream.server_port}"], {8080: port, 8081: internal})
    try:
        def get(path, accept):
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                             headers={"Accept": accept})
            for _ in range(50):
                try:
                    with urllib.request.urlopen(request, timeout=5) as response:
                        return response.headers.get("X-Cache-Status"), response.read().decode()
                except urllib.error.URLError:
                    if process.poll() is not None:
                        pytest.fail(f"nginx exited: {process.stderr.read().decode()}")
                    time.sleep(0.1)
            pytest.fail("nginx did not answer")

        chrome = "image/avif,image/webp,*/*;q=0.8"
        assert get("/public.jpg", chrome)[0] == "MISS"
        status, body = get("/public.jpg", chrome)
        assert status == "HIT" and body.startswith("1 image/avif,image/webp")
        assert get("/public.jpg", "image/webp,*/*")[0] == "MISS"  # other class, other entry
        assert get("/private.jpg", chrome)[0] == "MISS"
        assert get("/private.jpg", chrome)[0] == "MISS"
        assert hits == {"/public.jpg": 2, "/private.jpg": 2}
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/events/minio", timeout=5)
        assert refused.value.code == 404
        refused.value.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stderr.close()
        upstream.shutdown()
        upstream.server_close()

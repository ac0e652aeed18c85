"""``imgstack doctor`` against a running stack (the session fixtures), a wrong key and a stopped S3.

The events endpoint (POST /events/minio) may not exist in this build: the doctor then reports that
line as FAIL ("the events endpoint is off"); ``--skip-events`` turns the check into a SKIP.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from thumbor_plugins import embedded
from thumbor_plugins.cli.doctor import command

from .conftest import BUCKET, DERIVED, SECURITY_KEY, thumbor_env


def doctor(thumbor_url: str, s3_server, *args: str, key: str = SECURITY_KEY, env: dict | None = None):
    base_env = {"SECURITY_KEY": key, "AWS_ENDPOINT_URL": s3_server.endpoint_url,
                "AWS_ACCESS_KEY_ID": s3_server.access_key, "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
                "AWS_ENDPOINT_URL_S3": None, "AWS_PROFILE": None, "IMGSTACK_EVENTS_TOKEN": None}
    base_env.update(env or {})
    result = CliRunner().invoke(command, ["--url", thumbor_url, "--timeout", "20", *args], env=base_env)
    lines = {}
    for line in result.output.splitlines():
        status, _, rest = line.partition("  ")
        if status in ("PASS", "FAIL", "SKIP"):
            name, _, detail = rest.partition(": ")
            lines[name] = (status, detail)
    return result, lines


CHECKS = [
    "config", "s3", f"bucket {BUCKET}", f"bucket {DERIVED}", "thumbor /healthcheck",
    "thumbor /healthcheck/ready", "signed URL renders", f"bucket {BUCKET} is private",
    f"bucket {DERIVED} is private", "wrong signature is refused", "events endpoint refuses a wrong token",
]


def test_doctor_passes_against_the_running_stack(thumbor, s3_server, s3) -> None:
    result, lines = doctor(thumbor.url, s3_server)
    assert list(lines) == CHECKS, result.output
    assert all(status == "PASS" for name, (status, _) in lines.items() if name != CHECKS[-1]), result.output
    events_status, events_detail = lines[CHECKS[-1]]
    if events_status == "PASS":  # the events endpoint is there
        assert result.exit_code == 0, result.output
    else:
        assert events_status == "FAIL" and "events endpoint is off" in events_detail, result.output
        assert result.exit_code == 1
    assert "anonymous object read refused" in lines[f"bucket {BUCKET} is private"][1]
    # it cleans up after itself
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="_doctor/").get("KeyCount", 0) == 0
    assert s3.list_objects_v2(Bucket=DERIVED, Prefix=f"{BUCKET}/_doctor/").get("KeyCount", 0) == 0


def test_doctor_exits_0_when_every_check_passes_with_events_skipped(thumbor, s3_server) -> None:
    result, lines = doctor(thumbor.url, s3_server, "--skip-events")
    assert result.exit_code == 0, result.output
    assert lines[CHECKS[-1]] == ("SKIP", "--skip-events")
    assert result.output.rstrip().endswith("10 passed, 0 failed, 1 skipped")


def test_doctor_takes_s3_settings_from_flags(thumbor, s3_server) -> None:
    flags = ["--endpoint-url", s3_server.endpoint_url, "--access-key", s3_server.access_key,
             "--secret-key", s3_server.secret_key, "--skip-events"]
    result, _ = doctor(thumbor.url, s3_server, *flags,
                       env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "nobody"})
    assert result.exit_code == 0, result.output


def test_doctor_fails_with_a_wrong_key_and_says_so(thumbor, s3_server) -> None:
    result, lines = doctor(thumbor.url, s3_server, "--skip-events", key="not-the-server-key-0123456789")
    assert result.exit_code == 1
    status, detail = lines["signed URL renders"]
    assert status == "FAIL" and "does not match the server's SECURITY_KEY" in detail
    assert lines["wrong signature is refused"][0] == "SKIP"
    assert lines["s3"][0] == "PASS" and lines["thumbor /healthcheck/ready"][0] == "PASS"
    assert "not-the-server-key" not in result.output  # the key is never printed


def test_doctor_refuses_thumbor_default_key(thumbor, s3_server) -> None:
    result, lines = doctor(thumbor.url, s3_server, "--skip-events", key="MY_SECURE_KEY")
    assert result.exit_code == 1
    assert lines["config"][0] == "FAIL" and "default" in lines["config"][1]


@pytest.mark.integration  # starts imgstack dev / its own S3 server
def test_doctor_fails_with_a_useful_message_when_s3_is_stopped(tmp_path) -> None:
    server = embedded.start_s3(tmp_path / "s3")
    thumbor = None
    try:
        embedded.ensure_buckets(server.endpoint_url, server.access_key, server.secret_key, [BUCKET, DERIVED])
        thumbor = embedded.start_thumbor(
            thumbor_env(server, IMGSTACK_S3_CONNECT_TIMEOUT="1", IMGSTACK_S3_READ_TIMEOUT="2"),
            tmp_path / "thumbor.log")
        server.stop()
        result, lines = doctor(thumbor.url, server, "--skip-events")
        assert result.exit_code == 1
        status, detail = lines["s3"]
        assert status == "FAIL" and "unreachable" in detail and server.endpoint_url in detail
        status, detail = lines["thumbor /healthcheck/ready"]
        assert status == "FAIL" and "503" in detail and ("unreachable" in detail or "timeout" in detail), result.output
        assert lines["thumbor /healthcheck"][0] == "PASS"
        assert lines["signed URL renders"][0] == "SKIP"
    finally:
        if thumbor is not None:
            thumbor.stop()
        server.stop()

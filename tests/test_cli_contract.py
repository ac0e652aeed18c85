"""The CLI's scripting contract against the REAL S3 server and a real Thumbor: each command's exit
code in each failure class, its ``--json`` document (schema; nothing else on stdout), ``--profile``
(a profile in temporary AWS config/credentials files; an unknown one is a configuration error)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from thumbor_plugins.cli import main
from thumbor_plugins.embedded import free_port

from .conftest import BUCKET, DERIVED, SECURITY_KEY
from .test_serving import upload

UNREADABLE = "/proc/self/mem"  # a regular file of size 0 whose first byte cannot be read, even by root
KINDS = {1: "failed", 2: "usage", 3: "config", 4: "unavailable", 5: "service"}


# -- the documents --------------------------------------------------------------------------------

def nullable(kind: str) -> dict:
    return {"type": [kind, "null"]}


def strict(properties: dict) -> dict:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


STRING, INT, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
CHANGE = strict({"path": STRING, "size": INT, "reason": STRING})
FIELDS = {
    "url": {"url": STRING, "image": STRING, "version": nullable("string"), "expires_at": nullable("integer"),
            "warnings": {"type": "array", "items": STRING}},
    "warm": {"location": STRING, "images": INT, "variants": INT, "failed": INT,
             "failures": {"type": "array", "items": strict({
                 "key": STRING, "preset": STRING, "format": STRING, "derived_key": STRING,
                 "status": nullable("integer"), "error": nullable("string")})}},
    "purge": {"derived_bucket": STRING, "prefix": STRING, "purged": INT, "failed": INT,
              "failures": {"type": "array", "items": strict({"key": STRING, "error": STRING})}},
    "sync": {"direction": {"enum": ["push", "pull"]}, "source": STRING, "dest": STRING, "dry_run": BOOL,
             "transferred": {"type": "array", "items": STRING}, "deleted": {"type": "array", "items": STRING},
             "unchanged": INT, "bytes": INT,
             "failures": {"type": "array", "items": strict({"path": STRING, "error": STRING})},
             "plan": {"oneOf": [{"type": "null"}, strict({"transfers": {"type": "array", "items": CHANGE},
                                                          "deletions": {"type": "array", "items": CHANGE}})]},
             "urls": {"type": "array", "items": strict({"key": STRING, "url": STRING})},
             "notices": {"type": "array", "items": STRING}},
    "doctor": {"url": STRING, "passed": INT, "failed": INT, "skipped": INT,
               "checks": {"type": "array", "items": strict({
                   "name": STRING, "status": {"enum": ["pass", "fail", "skip"]}, "detail": STRING})}},
}


def envelope(command: str, code: int, own: dict, *, error: bool = False, fields: bool = True) -> dict:
    """The document of a run: ``own`` are the command's fields (left out: ``fields`` False);
    ``error`` set or null."""
    return strict({"command": {"const": command}, "ok": {"const": code == 0}, "exit_code": {"const": code},
                   **(own if fields else {}),
                   "error": strict({"kind": {"const": KINDS[code]}, "message": STRING}) if error else {"type": "null"}})


def document(result, command: str, code: int, *, error: bool | None = None,  # noqa: ANN001
             fields: bool | None = None) -> dict:
    """The result's exit code is ``code`` and its stdout exactly one JSON document of the command's
    schema: by default, codes 0 and 1 with the command's fields and no error; codes 2 to 5, the
    error alone."""
    error = code >= 2 if error is None else error
    fields = not error if fields is None else fields
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stdout.endswith("\n") and result.stdout.count("\n") == 1, result.stdout
    found = json.loads(result.stdout)
    jsonschema.validate(found, envelope(command, code, FIELDS[command], error=error, fields=fields))
    if found["error"] is not None:
        assert found["error"]["message"] in result.stderr  # and said to humans too
    return found


# -- running the commands -------------------------------------------------------------------------

@pytest.fixture
def aws(s3_server, tmp_path) -> dict:  # noqa: ANN001
    """The environment of a user of the test server: keys in AWS_*, nothing from the developer's
    own AWS files or profile."""
    return {
        "AWS_ENDPOINT_URL": s3_server.endpoint_url, "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key, "AWS_SESSION_TOKEN": None, "AWS_PROFILE": None,
        "AWS_DEFAULT_PROFILE": None, "AWS_ENDPOINT_URL_S3": None, "AWS_REGION": None, "AWS_DEFAULT_REGION": None,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"), "AWS_EC2_METADATA_DISABLED": "true",
        "SECURITY_KEY": SECURITY_KEY, "IMGSTACK_URL": None, "IMGSTACK_EVENTS_TOKEN": None,
        "IMGSTACK_SIGNATURE_ALGORITHM": None, "IMGSTACK_PRESETS_FILE": None, "IMGSTACK_DERIVED_BUCKET": None,
        "IMGSTACK_MAX_LINK_LIFETIME": None, "IMGSTACK_SYNC_CACHE_DIR": str(tmp_path / "sync-cache"),
    }


def invoke(env: dict, *args: str, **more: str | None):  # noqa: ANN201
    return CliRunner().invoke(main, [str(a) for a in args], env={**env, **more})


@pytest.fixture
def profile(s3_server, tmp_path) -> dict:  # noqa: ANN001
    """AWS config and credentials files with a profile ``imgstack-test`` holding the server's keys."""
    config, credentials = tmp_path / "aws-config", tmp_path / "aws-credentials"
    config.write_text("[profile imgstack-test]\nregion = eu-west-1\n")
    credentials.write_text(f"[imgstack-test]\naws_access_key_id = {s3_server.access_key}\n"
                           f"aws_secret_access_key = {s3_server.secret_key}\n")
    return {"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
            "AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}


def unreachable() -> str:
    return f"http://127.0.0.1:{free_port()}"


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def variant_names(key: str) -> list[str]:
    """Derived-bucket keys shaped like results of ``images/key`` (what purge deletes)."""
    return [f"{BUCKET}/{key}/{'ab' * 20}.webp", f"{BUCKET}/{key}/{'cd' * 20}.avif"]


# -- url ---------------------------------------------------------------------------------------------

def test_url(aws, s3, uid) -> None:
    upload(s3, f"{uid}/a.jpg")
    ok = document(invoke(aws, "url", f"{BUCKET}/{uid}/a.jpg", "--version", "auto", "--expires", "60", "--json"),
                  "url", 0)
    assert ok["version"] and f"v({ok['version']})" in ok["url"] and 0 < ok["expires_at"] - time.time() <= 61
    # its one item failed: no URL, the reason in "error"
    missing = document(invoke(aws, "url", f"{BUCKET}/{uid}/none.jpg", "--version", "auto", "--json"), "url", 1,
                       error=True)
    assert "NotFound" in missing["error"]["message"]
    denied = document(invoke(aws, "url", f"{BUCKET}/{uid}/a.jpg", "--version", "auto", "--json",
                             AWS_SECRET_ACCESS_KEY="wrong"), "url", 3)
    assert "AccessDenied" in denied["error"]["message"]
    down = document(invoke(aws, "url", f"{BUCKET}/{uid}/a.jpg", "--version", "auto", "--json",
                           AWS_ENDPOINT_URL=unreachable()), "url", 4)
    assert "Unavailable" in down["error"]["message"]


# -- warm ---------------------------------------------------------------------------------------------

def test_warm_ok_and_failed_items(aws, s3, thumbor, uid) -> None:
    upload(s3, f"{uid}/good.jpg")
    args = ("warm", f"s3://{BUCKET}/{uid}/", "--url", thumbor.url, "--preset", "thumb", "--json")
    ok = document(invoke(aws, *args), "warm", 0)
    assert (ok["images"], ok["variants"], ok["failed"], ok["failures"]) == (1, 3, 0, [])
    assert ok["location"] == f"s3://{BUCKET}/{uid}/"
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/notes.txt", Body=b"not an image")
    result = invoke(aws, *args)
    partly = document(result, "warm", 1)
    assert (partly["images"], partly["variants"], partly["failed"]) == (2, 3, 3)
    assert {f["key"] for f in partly["failures"]} == {f"{uid}/notes.txt"}
    assert all(400 <= f["status"] < 600 and f["error"] is None for f in partly["failures"])
    assert "warmed 2 images, 3 variants, 3 failed" in result.stderr  # the summary moved to stderr


def test_warm_failure_classes(aws, s3, thumbor, uid) -> None:
    upload(s3, f"{uid}/a.jpg")
    where = f"s3://{BUCKET}/{uid}/"
    base = ("--url", thumbor.url, "--preset", "thumb", "--json")
    missing = document(invoke(aws, "warm", "s3://no-such-bucket/x/", *base), "warm", 3)
    assert "no-such-bucket" in missing["error"]["message"]
    document(invoke(aws, "warm", where, *base, AWS_SECRET_ACCESS_KEY="wrong"), "warm", 3)
    document(invoke(aws, "warm", where, *base, AWS_ENDPOINT_URL=unreachable()), "warm", 4)
    no_thumbor = document(invoke(aws, "warm", where, "--url", unreachable(), "--preset", "thumb", "--json"), "warm", 4,
                          fields=True)
    assert no_thumbor["failed"] == 3 and {f["error"] for f in no_thumbor["failures"]} == {"ConnectError"}
    assert "no answer from Thumbor" in no_thumbor["error"]["message"]
    document(invoke(aws, "warm", where, "--url", thumbor.url, "--preset", "nope", "--json"), "warm", 2)


# -- purge --------------------------------------------------------------------------------------------

def test_purge_ok_and_failure_classes(aws, s3, uid) -> None:
    key = f"{uid}/a.jpg"
    for name in (*variant_names(key), *variant_names(f"{key}/b.jpg")):
        s3.put_object(Bucket=DERIVED, Key=name, Body=b"x")
    args = ("purge", f"{BUCKET}/{key}", "--derived-bucket", DERIVED, "--json")
    ok = document(invoke(aws, *args), "purge", 0)
    assert (ok["purged"], ok["failed"], ok["prefix"], ok["derived_bucket"]) == (2, 0, f"{BUCKET}/{key}/", DERIVED)
    assert [item["Key"] for item in s3.list_objects_v2(Bucket=DERIVED, Prefix=f"{BUCKET}/{uid}/")["Contents"]] \
        == sorted(variant_names(f"{key}/b.jpg"))  # another original's variants stay
    assert document(invoke(aws, "purge", f"{BUCKET}/{uid}/", "--prefix", "--derived-bucket", DERIVED, "--json"),
                    "purge", 0)["purged"] == 2
    document(invoke(aws, "purge", f"{BUCKET}/{key}", "--derived-bucket", "no-such-bucket", "--json"), "purge", 3)
    document(invoke(aws, *args, AWS_SECRET_ACCESS_KEY="wrong"), "purge", 3)
    document(invoke(aws, *args, AWS_ENDPOINT_URL=unreachable()), "purge", 4)
    document(invoke(aws, "purge", f"{BUCKET}/{uid}/", "--json"), "purge", 2)


# -- sync ---------------------------------------------------------------------------------------------

def test_sync_json_push_dry_run_and_urls(aws, uid, tmp_path) -> None:
    root = tree(tmp_path / "photos", {"a.jpg": b"aaa", "sub/b.txt": b"bb"})
    dest = f"s3://{BUCKET}/{uid}/"
    dry = document(invoke(aws, "sync", root, dest, "--dry-run", "--json"), "sync", 0)
    assert dry["dry_run"] and dry["transferred"] == [] and dry["bytes"] == 0
    assert dry["plan"]["transfers"] == [{"path": "a.jpg", "size": 3, "reason": "new"},
                                        {"path": "sub/b.txt", "size": 2, "reason": "new"}]
    pushed = document(invoke(aws, "sync", root, dest, "--print-urls", "--json"), "sync", 0)
    assert (pushed["direction"], pushed["source"], pushed["dest"]) == ("push", str(root), dest)
    assert (pushed["transferred"], pushed["bytes"], pushed["unchanged"]) == (["a.jpg", "sub/b.txt"], 5, 0)
    assert [u["key"] for u in pushed["urls"]] == [f"{uid}/a.jpg"]  # images only
    assert pushed["urls"][0]["url"].endswith(f"/{BUCKET}/{uid}/a.jpg")
    again = document(invoke(aws, "sync", root, dest, "--json"), "sync", 0)
    assert (again["transferred"], again["unchanged"], again["plan"]["transfers"]) == ([], 2, [])


def test_sync_failure_classes(aws, s3, uid, tmp_path) -> None:
    root = tree(tmp_path / "photos", {"a.jpg": b"aaa"})
    (root / "locked.jpg").symlink_to(UNREADABLE)
    dest = f"s3://{BUCKET}/{uid}/"
    partly = document(invoke(aws, "sync", root, dest, "--json"), "sync", 1)
    assert partly["transferred"] == ["a.jpg"]
    assert [f["path"] for f in partly["failures"]] == ["locked.jpg"]
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = document(invoke(aws, "sync", empty, dest, "--delete", "--json"), "sync", 2)
    assert "empty" in refused["error"]["message"]
    document(invoke(aws, "sync", root, "s3://no-such-bucket/x/", "--json"), "sync", 3)
    document(invoke(aws, "sync", root, dest, "--json", AWS_ACCESS_KEY_ID="nobody"), "sync", 3)
    document(invoke(aws, "sync", root, dest, "--json", AWS_ENDPOINT_URL=unreachable()), "sync", 4)


def test_sync_watch_json_is_one_document_per_run(aws, s3, uid, tmp_path) -> None:
    root = tree(tmp_path / "photos", {"a.jpg": b"aaa"})
    env = {k: v for k, v in os.environ.items()}
    env.update({k: v for k, v in aws.items() if v is not None})
    for name in (k for k, v in aws.items() if v is None):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "thumbor_plugins.cli", "sync", str(root), f"s3://{BUCKET}/{uid}/", "--watch",
         "--debounce", "200", "--json"], cwd=Path(__file__).parent.parent,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        first = json.loads(process.stdout.readline())
        assert first["transferred"] == ["a.jpg"] and first["exit_code"] == 0
        while not process.stderr.readline().startswith("watching "):  # the folder is watched from now on
            assert process.poll() is None
        (root / "b.jpg").write_bytes(b"bbbb")
        second = json.loads(process.stdout.readline())
        jsonschema.validate(second, envelope("sync", 0, FIELDS["sync"]))
        assert second["transferred"] == ["b.jpg"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        rest = process.stdout.read()
        process.stdout.close()
        process.stderr.close()
    assert process.returncode == 0 and rest == ""


# -- doctor -------------------------------------------------------------------------------------------

def test_doctor(aws, thumbor) -> None:
    ok = document(invoke(aws, "doctor", "--url", thumbor.url, "--skip-events", "--timeout", "20", "--json"),
                  "doctor", 0)
    assert (ok["passed"], ok["failed"], ok["skipped"]) == (10, 0, 1)
    assert ok["checks"][0] == {"name": "config", "status": "pass", "detail": ok["checks"][0]["detail"]}
    down = document(invoke(aws, "doctor", "--url", thumbor.url, "--skip-events", "--json",
                           AWS_ENDPOINT_URL=unreachable()), "doctor", 1)  # a failed check, not a failed doctor
    assert {c["name"]: c["status"] for c in down["checks"]}["s3"] == "fail"


# -- --profile ----------------------------------------------------------------------------------------

def test_a_profile_of_the_aws_files_is_used(aws, profile, s3, uid, tmp_path) -> None:
    root = tree(tmp_path / "photos", {"a.jpg": b"aaa"})
    env = {**aws, **profile}
    assert invoke(env, "sync", root, f"s3://{BUCKET}/{uid}/", "--json").exit_code == 3  # no keys without it
    flag = document(invoke(env, "sync", root, f"s3://{BUCKET}/{uid}/", "--profile", "imgstack-test", "--json"),
                    "sync", 0)
    assert flag["transferred"] == ["a.jpg"]
    (root / "b.jpg").write_bytes(b"b")
    variable = document(invoke(env, "sync", root, f"s3://{BUCKET}/{uid}/", "--json", AWS_PROFILE="imgstack-test"),
                        "sync", 0)
    assert variable["transferred"] == ["b.jpg"]
    assert document(invoke(env, "url", f"{BUCKET}/{uid}/a.jpg", "--version", "auto", "--profile", "imgstack-test",
                           "--json"), "url", 0)["version"]
    assert document(invoke(env, "purge", f"{BUCKET}/{uid}/a.jpg", "--derived-bucket", DERIVED, "--profile",
                           "imgstack-test", "--json"), "purge", 0)["purged"] == 0


def test_the_profiles_region_is_used_unless_the_environment_names_one(profile, monkeypatch) -> None:
    from thumbor_plugins.s3 import S3Settings
    from thumbor_plugins.s3.sync import client

    for name, value in profile.items():
        monkeypatch.setenv(name, value) if value is not None else monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert client(S3Settings.from_env(profile="imgstack-test")).meta.region_name == "eu-west-1"
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    assert client(S3Settings.from_env(profile="imgstack-test")).meta.region_name == "us-west-2"


@pytest.mark.parametrize("args", [
    ("sync", ".", f"s3://{BUCKET}/x/"),
    ("warm", f"s3://{BUCKET}/x/", "--url", "http://127.0.0.1:9"),
    ("purge", f"{BUCKET}/x.jpg"),
    ("doctor", "--url", "http://127.0.0.1:9"),
    ("url", f"{BUCKET}/x.jpg", "--version", "auto"),
])
def test_an_unknown_profile_is_a_configuration_error(aws, profile, args) -> None:
    env = {**aws, **profile}
    flag = document(invoke(env, *args, "--profile", "nope", "--json"), args[0], 3)
    assert flag["error"]["message"].startswith("AWS profile 'nope' not found")
    variable = invoke(env, *args, AWS_PROFILE="nope-either")
    assert variable.exit_code == 3 and "AWS profile 'nope-either' not found" in variable.stderr
    assert "Traceback" not in variable.output


# -- dev ----------------------------------------------------------------------------------------------

def test_dev_usage_and_service_failures(s3_server, tmp_path) -> None:
    usage = invoke({}, "dev", "--s3-endpoint-url", "http://127.0.0.1:9")
    assert usage.exit_code == 2 and "--s3-access-key" in usage.stderr
    import socket

    with socket.socket() as taken:  # Thumbor cannot listen there: it does not start
        # a port `imgstack dev` accepts (below 55535; the system's own pick may be above it)
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        started = subprocess.run(
            [sys.executable, "-m", "thumbor_plugins.cli", "dev", "--data-dir", str(tmp_path / "data"), "--no-samples",
             "--port", str(taken.getsockname()[1]), "--s3-endpoint-url", s3_server.endpoint_url,
             "--s3-access-key", s3_server.access_key, "--s3-secret-key", s3_server.secret_key],
            cwd=Path(__file__).parent.parent, capture_output=True, text=True, timeout=240)
    assert started.returncode == 5, started.stdout + started.stderr
    assert "READY" not in started.stdout


@pytest.mark.integration  # starts imgstack dev / its own S3 server
def test_dev_with_an_unreachable_s3_server(tmp_path) -> None:
    started = subprocess.run(
        [sys.executable, "-m", "thumbor_plugins.cli", "dev", "--data-dir", str(tmp_path / "data"), "--no-samples",
         "--port", "0", "--s3-endpoint-url", unreachable(), "--s3-access-key", "a", "--s3-secret-key", "b"],
        cwd=Path(__file__).parent.parent, capture_output=True, text=True, timeout=240)
    assert started.returncode == 4, started.stdout + started.stderr
    assert "Unavailable" in started.stderr and "Traceback" not in started.stderr

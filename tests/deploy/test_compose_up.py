"""The whole compose stack for real, where a docker daemon runs (skipped with a reason elsewhere):
compose up, upload, a signed URL through the cache, delete and see the variants purged."""

from __future__ import annotations

import gc
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import warnings

import pytest

from thumbor_plugins import embedded

from .conftest import COMPOSE_FILE, ROOT, fake_env


@pytest.fixture(scope="module")
def docker_daemon():
    docker = pytest.importorskip("docker", reason="docker SDK not installed (test extra)")
    client, error = None, None
    # The SDK leaves its socket open when the daemon is missing: collect it here, quietly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = docker.from_env()
            client.ping()
        except Exception as exc:  # any failure to reach it means: no daemon here
            error = str(exc)
            if client is not None:
                client.close()
        gc.collect()
    if error is not None:
        pytest.skip(f"no docker daemon: {error}")
    if shutil.which("docker") is None:
        client.close()
        pytest.skip("no docker daemon: the docker CLI (docker compose) is not installed")
    yield client
    client.close()


@pytest.mark.integration
@pytest.mark.timeout(1800)
def test_full_stack(docker_daemon, tmp_path):
    """compose up (cache profile), upload an original, fetch a signed URL through the cache,
    delete the original and see its variants purged."""
    import boto3
    from botocore.config import Config as BotoConfig
    from PIL import Image

    from thumbor_plugins.urls import build_url

    env = fake_env()
    ports = {name: str(embedded.free_port()) for name in
             ("MINIO_API_PORT", "MINIO_CONSOLE_PORT", "THUMBOR_PORT", "CACHE_PORT")}
    env.update(ports, IMGSTACK_BIND="127.0.0.1")
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    project = f"imgstack-test-{secrets.token_hex(4)}"
    compose_cmd = ["docker", "compose", "-p", project, "-f", str(COMPOSE_FILE),
                   "--env-file", str(env_file), "--profile", "cache"]
    clean_env = {k: v for k, v in os.environ.items() if k not in env}

    def compose_run(*args, timeout=1500):
        return subprocess.run([*compose_cmd, *args], cwd=ROOT, env=clean_env,
                              capture_output=True, text=True, timeout=timeout)

    try:
        up = compose_run("up", "-d", "--build", "--wait", "--wait-timeout", "600")
        assert up.returncode == 0, up.stdout + up.stderr
        init = docker_daemon.containers.list(
            all=True, filters={"label": [f"com.docker.compose.project={project}",
                                         "com.docker.compose.service=minio-init"]})
        assert init and init[0].attrs["State"]["ExitCode"] == 0

        boto = BotoConfig(signature_version="s3v4", retries={"max_attempts": 3})
        endpoint = f"http://127.0.0.1:{ports['MINIO_API_PORT']}"
        root = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=boto,
                            aws_access_key_id=env["MINIO_ROOT_USER"],
                            aws_secret_access_key=env["MINIO_ROOT_PASSWORD"])
        thumbor_account = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                       config=boto,
                                       aws_access_key_id=env["THUMBOR_S3_ACCESS_KEY"],
                                       aws_secret_access_key=env["THUMBOR_S3_SECRET_KEY"])

        image_path = tmp_path / "photo.jpg"
        Image.new("RGB", (640, 480), (200, 40, 90)).save(image_path, "JPEG")
        root.upload_file(str(image_path), "images", "tests/photo.jpg",
                         ExtraArgs={"ContentType": "image/jpeg"})

        # least privilege: Thumbor's account cannot write originals
        with pytest.raises(Exception, match="AccessDenied"):
            thumbor_account.put_object(Bucket="images", Key="tests/evil.jpg", Body=b"x")

        # anonymous access is refused
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(f"{endpoint}/images/tests/photo.jpg", timeout=10)
        assert anonymous.value.code == 403
        anonymous.value.close()

        url = build_url("images/tests/photo.jpg", key=env["SECURITY_KEY"],
                        base=f"http://127.0.0.1:{ports['CACHE_PORT']}", width=120, height=90)
        request = urllib.request.Request(url, headers={"Accept": "image/webp,*/*"})
        statuses = []
        for _ in range(2):
            with urllib.request.urlopen(request, timeout=60) as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "image/webp"
                assert "public" in response.headers["Cache-Control"]
                statuses.append(response.headers["X-Cache-Status"])
                response.read()
        assert statuses == ["MISS", "HIT"]

        def derived_keys():
            listing = root.list_objects_v2(Bucket="images-derived",
                                           Prefix="images/tests/photo.jpg/")
            return [item["Key"] for item in listing.get("Contents", [])]

        deadline = time.monotonic() + 30
        while not derived_keys() and time.monotonic() < deadline:
            time.sleep(1)
        assert derived_keys(), "the result was not stored in images-derived"

        # deleting the original purges its variants (MinIO event -> Thumbor)
        root.delete_object(Bucket="images", Key="tests/photo.jpg")
        deadline = time.monotonic() + 60
        while derived_keys() and time.monotonic() < deadline:
            time.sleep(1)
        assert derived_keys() == [], "variants of a deleted original were not purged"
    finally:
        down = compose_run("down", "-v", "--remove-orphans", timeout=300)
        assert down.returncode == 0, down.stderr

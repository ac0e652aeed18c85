"""The S3 module against the real S3 server: typed results, the byte cap, error mapping."""

from __future__ import annotations

import asyncio
import os

import pytest

from thumbor_plugins.s3 import NotFound, S3Settings, TooLarge, Unavailable
from thumbor_plugins.s3.aio import AsyncS3, shared

from .conftest import BUCKET


@pytest.fixture
def settings(s3_server) -> S3Settings:
    return S3Settings(endpoint_url=s3_server.endpoint_url, access_key=s3_server.access_key,
                      secret_key=s3_server.secret_key)


def run(coro):
    return asyncio.run(coro)


def test_get_returns_typed_object(s3, settings, uid) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/a.bin", Body=b"hello", ContentType="image/png")

    async def go():
        client = AsyncS3(settings)
        try:
            return await client.get(BUCKET, f"{uid}/a.bin")
        finally:
            await client.close()

    data = run(go())
    assert data.body == b"hello"
    assert data.content_type == "image/png"
    assert len(data.etag) == 32 and '"' not in data.etag
    assert data.last_modified is not None


@pytest.mark.parametrize("name", ["a b.jpg", "a+b.jpg", "100%.jpg", "写真/猫.jpg", "x~!*'();,=@$&.jpg", "a%2Fb.jpg"])
def test_get_signs_keys_with_reserved_and_unicode_characters(s3, settings, uid, name) -> None:
    # the signed GET percent-encodes the key itself: a key must reach S3 exactly as stored
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/{name}", Body=name.encode(), Metadata={"Source-Etag": "abc"})

    async def go():
        client = AsyncS3(settings)
        try:
            return await client.get(BUCKET, f"{uid}/{name}")
        finally:
            await client.close()

    data = run(go())
    assert data.body == name.encode()
    assert data.metadata == {"source-etag": "abc"}


@pytest.mark.parametrize("name", ["a b.jpg", "a+b.jpg", "100%.jpg", "写真/猫.jpg", "x~!*'();,=@$&.jpg"])
def test_put_and_head_sign_keys_with_reserved_and_unicode_characters(s3, settings, uid, name) -> None:
    key = f"{uid}/put/{name}"

    async def go():
        client = AsyncS3(settings)
        try:
            await client.put(BUCKET, key, b"stored", content_type="image/webp", metadata={"Source-Etag": "abc"},
                             cache_control="max-age=60")
            return await client.head(BUCKET, key)
        finally:
            await client.close()

    info = run(go())
    stored = s3.get_object(Bucket=BUCKET, Key=key)
    assert stored["Body"].read() == b"stored"
    assert (stored["ContentType"], stored["Metadata"], stored["CacheControl"]) == \
        ("image/webp", {"source-etag": "abc"}, "max-age=60")
    assert (info.key, info.size, info.etag) == (key, 6, stored["ETag"].strip('"'))
    assert info.last_modified is not None


def test_head_and_put_errors_map_like_gets(settings, uid) -> None:
    # (SeaweedFS creates a missing bucket on a PUT by an admin: no NotFound case for put here)
    from dataclasses import replace

    from thumbor_plugins.s3 import AccessDenied

    async def go(client_settings, call):
        client = AsyncS3(client_settings)
        try:
            await call(client)
        finally:
            await client.close()

    with pytest.raises(NotFound):
        run(go(settings, lambda client: client.head(BUCKET, f"{uid}/none")))
    wrong = replace(settings, secret_key="not-the-secret")
    with pytest.raises(AccessDenied):
        run(go(wrong, lambda client: client.head(BUCKET, f"{uid}/none")))
    with pytest.raises(AccessDenied):
        run(go(wrong, lambda client: client.put(BUCKET, f"{uid}/x", b"x")))


def test_a_conditional_get_of_an_unchanged_object_comes_without_its_body(s3, settings, uid) -> None:
    etag = s3.put_object(Bucket=BUCKET, Key=f"{uid}/c.bin", Body=b"x" * 100_000)["ETag"].strip('"')

    async def go(tag):
        client = AsyncS3(settings)
        try:
            async with client.open(BUCKET, f"{uid}/c.bin", if_none_match=tag) as stream:
                body = b"" if stream.not_modified else await stream.read()
            return stream.not_modified, body, client.bytes_read
        finally:
            await client.close()

    assert run(go(etag)) == (True, b"", 0)
    assert run(go("0" * 32)) == (False, b"x" * 100_000, 100_000)


def test_wrong_secret_is_access_denied_not_a_miss(settings, uid) -> None:
    from dataclasses import replace

    from thumbor_plugins.s3 import AccessDenied

    async def go():
        client = AsyncS3(replace(settings, secret_key="not-the-secret"))
        try:
            await client.get(BUCKET, f"{uid}/nothing")
        finally:
            await client.close()

    with pytest.raises(AccessDenied) as error:
        run(go())
    assert error.value.code == "SignatureDoesNotMatch"


def test_should_stop_at_byte_cap_without_reading_the_object(s3, settings, uid) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/big.bin", Body=b"x" * (3 * 1024 * 1024))

    async def go():
        client = AsyncS3(settings)
        try:
            with pytest.raises(TooLarge) as error:
                await client.get(BUCKET, f"{uid}/big.bin", max_bytes=1024 * 1024)
            return client.bytes_read, error.value
        finally:
            await client.close()

    bytes_read, error = run(go())
    assert error.size == 3 * 1024 * 1024 and error.status == 413
    assert bytes_read <= 1024 * 1024


def test_missing_key_is_not_found(settings, uid) -> None:
    async def go():
        client = AsyncS3(settings)
        try:
            await client.get(BUCKET, f"{uid}/none")
        finally:
            await client.close()

    with pytest.raises(NotFound):
        run(go())


def test_unreachable_s3_is_unavailable_quickly() -> None:
    from thumbor_plugins.embedded import free_port

    settings = S3Settings(endpoint_url=f"http://127.0.0.1:{free_port()}", access_key="a", secret_key="b",
                          connect_timeout=1, read_timeout=1, max_attempts=2)

    async def go():
        client = AsyncS3(settings)
        try:
            await client.get(BUCKET, "x")
        finally:
            await client.close()

    with pytest.raises(Unavailable) as error:
        run(go())
    assert error.value.status in (502, 504)


def test_one_client_per_settings_per_process(settings) -> None:
    assert shared(settings) is shared(settings)
    assert shared(settings) is not shared(S3Settings(endpoint_url="http://elsewhere:9000"))


def test_list_delimited_and_delete(s3, settings, uid) -> None:
    for i in range(3):
        s3.put_object(Bucket=BUCKET, Key=f"{uid}/p/{i}", Body=b"1")
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/p/deeper/x", Body=b"1")
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/q", Body=b"1")

    async def go():
        client = AsyncS3(settings)
        try:
            listed = [info.key async for info in client.list(BUCKET, f"{uid}/p/")]
            children = [info.key async for info in client.list(BUCKET, f"{uid}/p/", delimiter="/")]
            await client.delete(BUCKET, children)
            after = [info.key async for info in client.list(BUCKET, f"{uid}/")]
            return listed, children, after
        finally:
            await client.close()

    listed, children, after = run(go())
    assert listed == [f"{uid}/p/0", f"{uid}/p/1", f"{uid}/p/2", f"{uid}/p/deeper/x"]
    assert children == [f"{uid}/p/0", f"{uid}/p/1", f"{uid}/p/2"]
    assert after == [f"{uid}/p/deeper/x", f"{uid}/q"]


def test_nothing_outside_the_s3_module_imports_an_s3_sdk() -> None:
    import ast
    from pathlib import Path

    import thumbor_plugins

    package = Path(thumbor_plugins.__file__).parent
    sdks = ("boto3", "botocore", "aiobotocore", "minio")
    offenders = []
    for path in package.rglob("*.py"):
        if path.relative_to(package).parts[0] == "s3":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path.relative_to(package)}: {n}" for n in names if n.split(".")[0] in sdks]
    assert offenders == []


def test_environment_credentials_are_left_to_botocores_chain_with_their_session_token() -> None:
    """AWS_SESSION_TOKEN (assumed roles, SSO, CI OIDC) used to be dropped: the keys were copied
    into the client without it. Now the chain reads all three; explicit keys still win."""
    import boto3

    env = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "token",
           "AWS_MAX_ATTEMPTS": "5"}
    settings = S3Settings.from_env(env)
    kwargs = settings.client_kwargs()
    assert "aws_access_key_id" not in kwargs and settings.max_attempts == 5
    original = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        credentials = boto3.session.Session().get_credentials().get_frozen_credentials()
    finally:
        for name, value in original.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    assert credentials.token == "token"
    explicit = S3Settings.from_env(env, access_key="a", secret_key="b").client_kwargs()
    assert explicit["aws_access_key_id"] == "a"


def test_max_attempts_counts_the_first_try() -> None:
    config = S3Settings(max_attempts=2).client_kwargs()["config"]
    assert config.retries == {"total_max_attempts": 2, "mode": "standard"}


# -- the CLI's side: one listing, per-key delete errors, profiles -----------------------------------

def test_list_prefix_pages_through_more_than_one_listing(s3, uid) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from thumbor_plugins.s3.sync import list_prefix

    keys = [f"{uid}/many/{i:04d}" for i in range(1003)]  # a listing answers 1000 at most
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=BUCKET, Key=key, Body=b"1"), keys))
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/many/sub/x", Body=b"22")
    listed = list(list_prefix(s3, BUCKET, f"{uid}/many/"))
    assert [info.key for info in listed] == [*keys, f"{uid}/many/sub/x"]
    assert listed[-1].size == 2 and len(listed[-1].etag) == 32 and listed[-1].last_modified is not None
    children = [info.key for info in list_prefix(s3, BUCKET, f"{uid}/many/", delimiter="/")]
    assert children == keys


def test_list_prefix_of_a_missing_bucket_is_not_found(s3) -> None:
    from thumbor_plugins.s3.sync import list_prefix

    with pytest.raises(NotFound):
        list(list_prefix(s3, "no-such-bucket", ""))


def test_delete_keys_reports_each_key_s3_refused(s3, settings, uid) -> None:
    """DeleteObjects answers 200 and lists the keys it refused (SeaweedFS refuses a '..' segment):
    they are returned (CLI) or raised with every key (server), never dropped."""
    from thumbor_plugins.s3 import DeleteFailed
    from thumbor_plugins.s3.sync import delete_keys, list_prefix

    for name in ("a", "b"):
        s3.put_object(Bucket=BUCKET, Key=f"{uid}/{name}", Body=b"1")
    refused = delete_keys(s3, BUCKET, [f"{uid}/a", f"{uid}/x/../y"])
    assert list(refused) == [f"{uid}/x/../y"] and refused[f"{uid}/x/../y"].startswith("InvalidRequest")
    assert [info.key for info in list_prefix(s3, BUCKET, f"{uid}/")] == [f"{uid}/b"]

    async def go():
        client = AsyncS3(settings)
        try:
            await client.delete(BUCKET, [f"{uid}/b", f"{uid}/x/../z"])
        finally:
            await client.close()

    with pytest.raises(DeleteFailed) as error:
        run(go())
    assert list(error.value.failed) == [f"{uid}/x/../z"] and isinstance(error.value, Unavailable)
    assert list(list_prefix(s3, BUCKET, f"{uid}/")) == []  # the rest was deleted


def test_an_unknown_profile_is_a_configuration_error(tmp_path, monkeypatch) -> None:
    from thumbor_plugins.s3 import AccessDenied, ConfigError
    from thumbor_plugins.s3.sync import client

    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    with pytest.raises(ConfigError, match="AWS profile 'nope' not found") as error:
        client(S3Settings(profile="nope"))
    assert isinstance(error.value, AccessDenied)  # the server's 502: our side's configuration
    monkeypatch.setenv("AWS_PROFILE", "nope-either")
    with pytest.raises(ConfigError, match="nope-either"):
        client(S3Settings())


def test_the_async_client_takes_the_profile_too(s3_server, tmp_path, monkeypatch, uid) -> None:
    (tmp_path / "credentials").write_text(f"[p]\naws_access_key_id = {s3_server.access_key}\n"
                                          f"aws_secret_access_key = {s3_server.secret_key}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)

    async def go():
        client = AsyncS3(S3Settings(endpoint_url=s3_server.endpoint_url, profile="p"))
        try:
            await client.put(BUCKET, f"{uid}/p.bin", b"profiled")
            return (await client.get(BUCKET, f"{uid}/p.bin")).body
        finally:
            await client.close()

    assert run(go()) == b"profiled"


def test_importing_the_s3_package_loads_no_sdk() -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, thumbor_plugins.s3; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore', 'aiobotocore', 'aiohttp'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout
    assert out.strip() == "[]"

"""``imgstack warm`` and ``imgstack purge`` against the real S3 server and a real Thumbor."""

from __future__ import annotations

import httpx
import pytest
from click.testing import CliRunner

from thumbor_plugins import presets
from thumbor_plugins.cli import main
from thumbor_plugins.events import warm_requests
from thumbor_plugins.sources import Source

from .conftest import BUCKET, DERIVED, SECURITY_KEY, sign
from .test_serving import derived_objects, upload

PRESETS = presets.load(None)


def s3_args(s3_server) -> list[str]:
    return ["--endpoint-url", s3_server.endpoint_url, "--access-key", s3_server.access_key,
            "--secret-key", s3_server.secret_key]


def run(*args: str) -> object:
    # no AWS_* or SECURITY_KEY from the developer's shell: everything comes from the arguments
    env = {"AWS_ENDPOINT_URL": None, "AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "SECURITY_KEY": None}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def expected(key: str, names=None) -> list[str]:
    return sorted(r.derived_key for r in warm_requests(f"{BUCKET}/{key}", Source(BUCKET, key), PRESETS,
                                                       key=SECURITY_KEY, names=names))


def test_warm_renders_the_same_variants_as_an_upload_event(s3, s3_server, thumbor, uid) -> None:
    keys = [f"{uid}/one.jpg", f"{uid}/two words+ü.jpg"]
    for key in keys:
        upload(s3, key)
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/folder/", Body=b"")  # a console folder marker: skipped
    result = run("warm", f"s3://{BUCKET}/{uid}/", "--url", thumbor.url, "--key", SECURITY_KEY,
                 "--concurrency", "3", *s3_args(s3_server))
    assert result.exit_code == 0, result.output
    per_image = len(PRESETS) * 3
    assert result.stdout.strip().splitlines()[-1] == f"warmed 2 images, {2 * per_image} variants, 0 failed"
    for key in keys:
        assert sorted(derived_objects(s3, key, at_least=per_image)) == expected(key)
    # and browsers hit them: the original is gone, the preset still answers
    s3.delete_object(Bucket=BUCKET, Key=keys[1])
    response = httpx.get(sign(f"{BUCKET}/{keys[1]}", base=thumbor.url, params=PRESETS["card"]),
                         headers={"Accept": "image/webp,*/*"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/webp"


def test_warm_works_in_private_mode_where_every_link_must_expire(s3, s3_server, thumbor_factory, uid) -> None:
    thumbor = thumbor_factory(IMGSTACK_REQUIRE_EXPIRES="true", IMGSTACK_MAX_LINK_LIFETIME="300")
    key = f"{uid}/private.jpg"
    upload(s3, key)
    result = run("warm", f"s3://{BUCKET}/{key}", "--url", thumbor.url, "--key", SECURITY_KEY,
                 "--preset", "thumb", *s3_args(s3_server))
    assert result.exit_code == 0, result.output
    assert sorted(derived_objects(s3, key, at_least=3)) == expected(key, ["thumb"])


def test_warm_only_named_presets(s3, s3_server, thumbor, uid) -> None:
    key = f"{uid}/only-thumb.jpg"
    upload(s3, key)
    result = run("warm", f"s3://{BUCKET}/{key}", "--url", thumbor.url, "--key", SECURITY_KEY,
                 "--preset", "thumb", *s3_args(s3_server))
    assert result.exit_code == 0, result.output
    assert "warmed 1 images, 3 variants, 0 failed" in result.stdout
    assert sorted(derived_objects(s3, key, at_least=3)) == expected(key, ["thumb"])


def test_warm_exits_1_when_a_render_fails(s3, s3_server, thumbor, uid) -> None:
    upload(s3, f"{uid}/good.jpg")
    s3.put_object(Bucket=BUCKET, Key=f"{uid}/notes.txt", Body=b"not an image")
    result = run("warm", f"s3://{BUCKET}/{uid}/", "--url", thumbor.url, "--key", SECURITY_KEY,
                 "--preset", "thumb", *s3_args(s3_server))
    assert result.exit_code == 1
    assert "warmed 2 images, 3 variants, 3 failed" in result.stdout
    assert "notes.txt" in result.stderr


def test_warm_with_a_wrong_key_fails_every_variant(s3, s3_server, thumbor, uid) -> None:
    upload(s3, f"{uid}/a.jpg")
    result = run("warm", f"s3://{BUCKET}/{uid}/", "--url", thumbor.url, "--key", "not-the-key",
                 "--preset", "thumb", *s3_args(s3_server))
    assert result.exit_code == 1
    assert "3 failed" in result.stdout and "403" in result.stderr and "hint:" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["s3://images/x/", "--url", "http://127.0.0.1:1"], "no signing key"),
    (["images/x/", "--url", "http://127.0.0.1:1", "--key", "k"], "s3://BUCKET/PREFIX"),
    (["s3://images/x/", "--url", "http://127.0.0.1:1", "--key", "k", "--preset", "nope"], "unknown preset"),
])
def test_warm_usage_errors(args, message) -> None:
    result = run("warm", *args)
    assert result.exit_code == 2
    assert message in result.output


def test_purge_one_original_then_a_prefix(s3, s3_server, thumbor, uid) -> None:
    keys = [f"{uid}/a b.jpg", f"{uid}/a b.jpg.bak/c.jpg", f"{uid}/d/e.jpg"]
    for key in keys:
        upload(s3, key)
    result = run("warm", f"s3://{BUCKET}/{uid}/", "--url", thumbor.url, "--key", SECURITY_KEY,
                 "--preset", "thumb", *s3_args(s3_server))
    assert result.exit_code == 0, result.output

    result = run("purge", f"{BUCKET}/{keys[0]}", "--derived-bucket", DERIVED, *s3_args(s3_server))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "purged 3 objects"
    assert derived_objects(s3, keys[0], wait=0) == []
    assert len(derived_objects(s3, keys[1], wait=0)) == 3  # a longer key sharing the prefix is untouched
    # the original is still there: a new size renders (the purged ones may still be served from
    # the workers' memory for IMGSTACK_HOT_RESULTS_SECONDS: `imgstack purge` does not reach it)
    assert httpx.get(sign(f"{BUCKET}/{keys[0]}", base=thumbor.url, width=33, height=22),
                     headers={"Accept": "image/jpeg"}).status_code == 200

    result = run("purge", f"{BUCKET}/{uid}/", "--prefix", "--derived-bucket", DERIVED, *s3_args(s3_server))
    assert result.exit_code == 0, result.output
    # keys[0] came back through the request above (1 object), plus 3 + 3 for the others
    assert result.stdout.strip() == "purged 7 objects"
    for key in keys:
        assert derived_objects(s3, key, wait=0) == []


def test_purge_needs_a_key_unless_prefix(s3_server) -> None:
    result = run("purge", f"{BUCKET}/", *s3_args(s3_server))
    assert result.exit_code == 2
    assert "--prefix" in result.output

"""The one parser of ``s3://BUCKET/KEY`` and ``BUCKET/KEY`` (``thumbor_plugins.s3.location``), and
every command reading its locations with it. Unit tests: no S3 server."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from thumbor_plugins.cli import main
from thumbor_plugins.s3 import BadLocation, S3Path
from thumbor_plugins.sync import Refused, S3Location

PACKAGE = Path(__file__).resolve().parent.parent / "thumbor_plugins"


@pytest.mark.parametrize(("text", "bucket", "key"), [
    ("s3://images/a.jpg", "images", "a.jpg"),
    ("s3://images/photos/", "images", "photos/"),
    ("s3://images/", "images", ""),
    ("s3://images/été 1/a b+c.jpg", "images", "été 1/a b+c.jpg"),
    ("s3://images/a//b", "images", "a//b"),  # kept as given: a key may hold anything
    ("s3://Legacy_Bucket.1/x", "Legacy_Bucket.1", "x"),
])
def test_round_trip(text: str, bucket: str, key: str) -> None:
    path = S3Path.parse(text)
    assert path == S3Path(bucket, key)
    assert str(path) == text
    assert S3Path.parse(str(path)) == path


def test_bucket_alone_reads_back_canonical() -> None:
    assert S3Path.parse("s3://images") == S3Path("images", "")
    assert str(S3Path.parse("s3://images")) == "s3://images/"


@pytest.mark.parametrize(("text", "bucket", "key"), [
    ("images/a b.jpg", "images", "a b.jpg"),
    ("/images/a.jpg", "images", "a.jpg"),  # a URL's image part
    ("images/", "images", ""),
    ("images", "images", ""),
])
def test_bucket_slash_key_without_scheme(text: str, bucket: str, key: str) -> None:
    path = S3Path.parse(text, scheme=False)
    assert path == S3Path(bucket, key)
    assert S3Path.parse(str(path)) == path  # the same object, written as s3://


@pytest.mark.parametrize(("text", "message"), [
    ("images/a.jpg", "expected s3://BUCKET/KEY"),
    ("", "expected s3://BUCKET/KEY"),
    ("S3://images/a", "expected s3://BUCKET/KEY"),
    ("s3://", "no bucket"),
    ("s3:///a.jpg", "no bucket"),
    ("s3://ab/x", "bad bucket name 'ab'"),
    ("s3://my bucket/x", "bad bucket name"),
    ("s3://im\\ages/x", "bad bucket name"),
    ("s3://images?x=1/a", "bad bucket name"),
    ("s3://" + "b" * 256 + "/x", "bad bucket name"),
])
def test_bad_input_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(BadLocation, match=re.escape(message)) as error:
        S3Path.parse(text)
    assert isinstance(error.value, ValueError)
    if text:
        assert repr(text) in str(error.value)  # says what it was given


def test_sync_locations_are_read_by_the_same_parser() -> None:
    assert S3Location.parse("s3://images/a/b") == S3Location("images", "a/b/")
    assert str(S3Location("images", "a/")) == str(S3Path("images", "a/"))
    with pytest.raises(Refused, match="bad bucket name 'ab'"):
        S3Location.parse("s3://ab/x")


def run(*args: str):  # noqa: ANN201
    env = {"SECURITY_KEY": "k", "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_PROFILE": None}
    return CliRunner().invoke(main, list(args), env=env)


@pytest.mark.parametrize("args", [
    ("warm", "images/x/", "--url", "http://127.0.0.1:9"),
    ("warm", "s3://ab/x/", "--url", "http://127.0.0.1:9"),
    ("purge", "ab/x.jpg"),
    ("purge", "/"),
    ("sync", "s3://ab/x/", "."),
    ("url", "ab/x.jpg", "--version", "auto"),
])
def test_every_command_refuses_a_bad_location_as_a_usage_error(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert ("bad bucket name" in result.output or "expected s3://" in result.output
            or "no bucket" in result.output), result.output


def test_the_scheme_is_spelled_out_in_the_parser_only() -> None:
    """No second parser: no code outside ``s3/location.py`` compares or slices with ``"s3://"``
    (messages may name it inside longer text)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).as_posix() == "s3/location.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value == "s3://":
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


def test_importing_the_parser_loads_no_s3_sdk() -> None:
    code = ("import sys; import thumbor_plugins.s3.location, thumbor_plugins.cli.exits, thumbor_plugins.cli.options; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore', 'aiobotocore', 'aiohttp'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent).stdout
    assert out.strip() == "[]"

"""``imgstack url``."""

import time

import pytest
from click.testing import CliRunner

from thumbor_plugins.cli import main
from thumbor_plugins.urls import Signer, verify_request

KEY = "cli-key"


def run(*args, env=None):
    base_env = {"SECURITY_KEY": None, "IMGSTACK_SIGNATURE_ALGORITHM": None}
    return CliRunner().invoke(main, ["url", *args], env={**base_env, **(env or {})})


def test_prints_a_verifiable_url():
    result = run("images/a b.jpg", "--size", "300x200", "--smart", "--filters", "format(webp):quality(80)",
                 "--expires", "60", "--version", "3f2a", "--base", "https://img.example.com", "--key", KEY)
    assert result.exit_code == 0, result.output
    url = result.output
    assert url.endswith("\n") and url.count("\n") == 1
    path = url.strip().removeprefix("https://img.example.com")
    params = verify_request(path, signer=Signer([KEY]), now=time.time())
    assert (params.width, params.height, params.smart, params.image) == (300, 200, True, "images/a%20b.jpg")
    assert params.format == "webp" and params.version == "3f2a"
    assert 0 < params.expires_at - time.time() <= 60


def test_key_and_algorithm_from_environment():
    result = run("a.jpg", "--expires-at", "2000000000",
                 env={"SECURITY_KEY": KEY, "IMGSTACK_SIGNATURE_ALGORITHM": "sha256"})
    assert result.exit_code == 0, result.output
    params = verify_request(result.output.strip(), signer=Signer([KEY], "sha256"), now=time.time())
    assert params.expires_at == 2000000000


def test_fit_in_with_width_only():
    result = run("a.jpg", "--size", "300x", "--fit-in", "--key", KEY)
    assert result.exit_code == 0, result.output
    assert "/fit-in/300x/a.jpg" in result.output


def test_missing_key_is_a_clear_error():
    result = run("a.jpg")
    assert result.exit_code == 2
    assert "SECURITY_KEY" in result.output


@pytest.mark.parametrize("args", [
    ["--expires", "60", "--expires-at", "2000000000"],
    ["--size", "300"],
    ["--size", "axb"],
    ["--size", "x"],
    ["--size", "-300x200"],
    ["--expires", "0"],
    ["--version", "auto"],
    ["--filters", "expires(1)"],
    ["--filters", "quality(80"],
    ["--fit-in"],
    ["--algorithm", "md5"],
])
def test_usage_errors(args):
    result = run("a.jpg", "--key", KEY, *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_warns_when_expires_at_is_already_past():
    past = run("images/a.jpg", "--expires-at", "1767225600", "--key", KEY)
    assert past.exit_code == 0
    assert past.stdout.count("\n") == 1 and past.stdout.startswith("/")  # the link, alone on stdout
    assert "in the past" in past.stderr and "410" in past.stderr
    future = run("images/a.jpg", "--expires-at", str(int(time.time()) + 3600), "--key", KEY)
    assert future.exit_code == 0 and future.stderr == ""

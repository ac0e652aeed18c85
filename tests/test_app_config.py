"""Start-up refusals (imgproxy's habit: refuse a bad config at start): the checks the application
class and thumbor_plugins.serve run before serving anything."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from thumbor.config import Config

import thumbor_plugins.config  # noqa: F401 - defines our settings
from thumbor_plugins.settings import SettingError, settings_of

KEY = "a-long-random-secret-0123456789abcdef"


def context(**values: object) -> SimpleNamespace:
    return SimpleNamespace(config=Config(**values), server=SimpleNamespace(security_key=None))


def validate(**values: object) -> None:
    settings_of(context(**values)).validate()


def test_a_real_key_starts() -> None:
    validate(SECURITY_KEY=KEY, IMGSTACK_VERIFY_KEYS="an-older-secret-0123456789abcdefghij")


def test_the_keyfile_key_signs_instead_of_security_key() -> None:
    keyfile = SimpleNamespace(config=Config(SECURITY_KEY="short"), server=SimpleNamespace(security_key=KEY.encode()))
    settings = settings_of(keyfile)
    settings.validate()
    assert settings.signing_keys == (KEY,)


@pytest.mark.parametrize("values, message", [
    ({}, "SECURITY_KEY is not set"),
    ({"SECURITY_KEY": "MY_SECURE_KEY"}, "SECURITY_KEY is not set"),
    ({"SECURITY_KEY": KEY, "IMGSTACK_VERIFY_KEYS": "old, MY_SECURE_KEY"}, "default key"),
    ({"SECURITY_KEY": KEY, "IMGSTACK_SIGNATURE_ALGORITHM": "md5"}, "sha1 or sha256"),
    # a short key falls to an offline search from one signed URL
    ({"SECURITY_KEY": "short-secret"}, "SECURITY_KEY holds a key of 12 characters"),
    ({"SECURITY_KEY": KEY, "IMGSTACK_VERIFY_KEYS": "old-key"}, "IMGSTACK_VERIFY_KEYS holds a key of 7 characters"),
    ({"SECURITY_KEY": KEY, "IMGSTACK_PRESETS_FILE": "/nonexistent/presets.json"}, "cannot read presets file"),
    ({"SECURITY_KEY": KEY, "IMGSTACK_TRUSTED_PROXIES": "10.0.0.0/8, a-proxy"}, "IMGSTACK_TRUSTED_PROXIES"),
    ({"SECURITY_KEY": KEY, "IMGSTACK_MAX_PIXELS": "a lot"}, "IMGSTACK_MAX_PIXELS='a lot': expected a whole number"),
    ({"SECURITY_KEY": KEY, "IMGSTACK_EVENTS_WORKERS": 0}, "IMGSTACK_EVENTS_WORKERS=0: must be 1 or more"),
    ({"SECURITY_KEY": KEY, "IMGSTACK_RENDER_NICENESS": 20}, "IMGSTACK_RENDER_NICENESS=20: must be from 0 to 19"),
    ({"SECURITY_KEY": KEY, "IMGSTACK_REQUIRE_EXPIRES": "maybe"}, "IMGSTACK_REQUIRE_EXPIRES='maybe'"),
])
def test_should_refuse_to_start_with_a_key_anyone_knows_or_a_bad_setting(values: dict, message: str) -> None:
    with pytest.raises(SettingError, match=message):
        validate(**values)


def test_only_presets_needs_presets(tmp_path) -> None:  # noqa: ANN001
    empty = tmp_path / "presets.json"
    empty.write_text("{}")
    with pytest.raises(SettingError, match="defines no preset"):
        validate(SECURITY_KEY=KEY, IMGSTACK_ONLY_PRESETS=True, IMGSTACK_PRESETS_FILE=str(empty))

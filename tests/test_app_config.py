"""Start-up refusals of the application class (imgproxy's habit: refuse a bad config at start)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from thumbor.config import Config

import thumbor_plugins.config  # noqa: F401 - defines our settings
from thumbor_plugins.app import ConfigError, validate


def context(**values: object) -> SimpleNamespace:
    return SimpleNamespace(config=Config(**values), server=SimpleNamespace(security_key=None))


def test_a_real_key_starts() -> None:
    validate(context(SECURITY_KEY="a-long-random-secret-0123456789abcdef", IMGSTACK_VERIFY_KEYS="an-older-secret-0123456789abcdefghij"))


@pytest.mark.parametrize("values, message", [
    ({}, "SECURITY_KEY is not set"),
    ({"SECURITY_KEY": "MY_SECURE_KEY"}, "SECURITY_KEY is not set"),
    ({"SECURITY_KEY": "a-long-random-secret-0123456789abcdef", "IMGSTACK_VERIFY_KEYS": "old, MY_SECURE_KEY"}, "default key"),
    ({"SECURITY_KEY": "a-long-random-secret-0123456789abcdef", "IMGSTACK_SIGNATURE_ALGORITHM": "md5"}, "sha1 or sha256"),
    # a short key falls to an offline search from one signed URL
    ({"SECURITY_KEY": "short-secret"}, "SECURITY_KEY holds a key of 12 characters"),
    ({"SECURITY_KEY": "a-long-random-secret-0123456789abcdef", "IMGSTACK_VERIFY_KEYS": "old-key"},
     "IMGSTACK_VERIFY_KEYS holds a key of 7 characters"),
])
def test_should_refuse_to_start_with_a_key_anyone_knows_or_a_bad_setting(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(context(**values))

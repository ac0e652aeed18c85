"""Unit tests: source keys from URL image paths, and settings from the environment."""

from __future__ import annotations

import pytest
from thumbor.config import Config

from thumbor_plugins import config as cfg
from thumbor_plugins.settings import Settings
from thumbor_plugins.sources import Source, SourceError, locate

ALLOWED = ("images",)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("images/a.jpg", Source("images", "a.jpg")),
        ("images/dir/sub/a.jpg", Source("images", "dir/sub/a.jpg")),
        ("images/a%20b.jpg", Source("images", "a b.jpg")),
        ("images/a+b.jpg", Source("images", "a+b.jpg")),  # + is not a space in a path
        ("images/a%2Bb.jpg", Source("images", "a+b.jpg")),
        ("images/100%25.jpg", Source("images", "100%.jpg")),
        ("images/%E3%83%97%E3%83%AD%E3%83%95%E3%82%A3%E3%83%BC%E3%83%AB%20%E7%94%BB%E5%83%8F%2B1.png",
         Source("images", "プロフィール 画像+1.png")),
        ("images/プロフィール 画像+1.png", Source("images", "プロフィール 画像+1.png")),
    ],
)
def test_locate_decodes_exactly_once(image: str, expected: Source) -> None:
    assert locate(image, allowed_buckets=ALLOWED) == expected


def test_should_not_decode_twice_double_encoded_traversal() -> None:
    # %252e%252e decodes once to the literal key "%2e%2e", never to ".."
    assert locate("images/%252e%252e/secret", allowed_buckets=ALLOWED).key == "%2e%2e/secret"


@pytest.mark.parametrize(
    "image",
    ["images/../other/a.jpg", "images/%2e%2e/a.jpg", "images/a/./b.jpg", "images/a/%2E%2E", "images/",
     "images", "images/a%00.jpg", "images/a%0d%0aX: y", "images/a\nb", "images/%ff.jpg", "images/a%C3.jpg",
     # empty segments: no image has one; "folder/" would name the derived prefix of a whole folder
     "images/a//b.jpg", "images//a.jpg", "images/folder/", "images/a%2F%2Fb.jpg", "images/folder%2F"],
)
def test_should_fail_with_traversal_empty_or_control_characters(image: str) -> None:
    with pytest.raises(SourceError) as error:
        locate(image, allowed_buckets=ALLOWED)
    assert error.value.status == 400


@pytest.mark.parametrize("image", ["other/a.jpg", "images-derived/a.jpg", "%69mages2/a.jpg"])
def test_should_refuse_buckets_outside_allow_list(image: str) -> None:
    with pytest.raises(SourceError) as error:
        locate(image, allowed_buckets=ALLOWED)
    assert error.value.status == 404


def test_fixed_bucket_and_root_path() -> None:
    source = locate("dir/a.jpg", allowed_buckets=("photos",), fixed_bucket="photos", root_path="/originals/")
    assert source == Source("photos", "originals/dir/a.jpg")
    assert source.prefix == "photos/originals/dir/a.jpg/"


def test_environment_values_take_the_type_of_the_default() -> None:
    values = cfg.from_environment(
        {
            "IMGSTACK_MAX_SOURCE_BYTES": "1048576",
            "IMGSTACK_REQUIRE_EXPIRES": "true",
            "IMGSTACK_S3_READ_TIMEOUT": "2.5",
            "IMGSTACK_VERIFY_KEYS": "old-key, older-key",
            "IMGSTACK_ALLOWED_BUCKETS": "images,photos",
            "MAX_AGE": "60",
            "AUTO_AVIF": "0",
            "SECURITY_KEY": "k",
            "UNRELATED": "x",
        }
    )
    assert values == {
        "IMGSTACK_MAX_SOURCE_BYTES": 1048576,
        "IMGSTACK_REQUIRE_EXPIRES": True,
        "IMGSTACK_S3_READ_TIMEOUT": 2.5,
        "IMGSTACK_VERIFY_KEYS": ("old-key", "older-key"),
        "IMGSTACK_ALLOWED_BUCKETS": ("images", "photos"),
        "MAX_AGE": 60,
        "AUTO_AVIF": False,
        "SECURITY_KEY": "k",
    }


@pytest.mark.parametrize(("name", "text"), [("MAX_AGE", "a day"), ("IMGSTACK_REQUIRE_EXPIRES", "maybe")])
def test_bad_environment_values_are_clear_errors(name: str, text: str) -> None:
    with pytest.raises(cfg.SettingError, match=name):
        cfg.from_environment({name: text})


def test_our_name_set_to_its_default_still_beats_the_seed_name() -> None:
    both = Config(TC_AWS_ALLOWED_BUCKETS="legacy", IMGSTACK_ALLOWED_BUCKETS=("images",))  # ours = the default
    assert Settings.of(both).allowed_buckets == ("images",)
    assert Settings.of(Config(TC_AWS_ALLOWED_BUCKETS="legacy")).allowed_buckets == ("legacy",)


def test_our_name_given_in_the_environment_beats_the_seed_name(monkeypatch) -> None:  # noqa: ANN001
    """Thumbor's --use-environment: values come from os.environ, not from the config's own keys."""

    class EnvironmentConfig(Config):
        _allow_environment_variables = True

    monkeypatch.setenv("IMGSTACK_BUCKET", "")
    monkeypatch.setenv("IMGSTACK_ALLOWED_BUCKETS", "images")
    settings = Settings.of(EnvironmentConfig(TC_AWS_LOADER_BUCKET="legacy", TC_AWS_ALLOWED_BUCKETS="a,b"))
    assert (settings.bucket, settings.allowed_buckets) == (None, ("images",))


def test_seed_tc_aws_names_are_read_and_ours_win() -> None:
    seed_only = Settings.of(Config(TC_AWS_LOADER_BUCKET="legacy", TC_AWS_ENDPOINT="http://minio:9000",
                                   TC_AWS_ALLOWED_BUCKETS="a,b", TC_AWS_LOADER_ROOT_PATH="originals"))
    assert seed_only.bucket == "legacy" and seed_only.s3_endpoint_url == "http://minio:9000"
    assert seed_only.allowed_buckets == ("a", "b") and seed_only.loader_root_path == "originals"
    assert seed_only.readable_buckets == ("a", "b", "legacy")
    assert Settings.of(Config(TC_AWS_LOADER_BUCKET="legacy", IMGSTACK_BUCKET="ours")).bucket == "ours"
    assert Settings.of(Config(TC_AWS_REGION="eu-west-3")).s3_region == "eu-west-3"
    from thumbor_plugins.s3.settings import S3Settings

    assert S3Settings.from_config(Config(TC_AWS_ENDPOINT="http://minio:9000")).endpoint_url == "http://minio:9000"
    seed_env = cfg.from_environment({"TC_AWS_ALLOWED_BUCKETS": "x,y"})
    assert seed_env == {"TC_AWS_ALLOWED_BUCKETS": ("x", "y")}


def test_settings_are_built_once_per_config_and_frozen() -> None:
    config = Config(IMGSTACK_MAX_PIXELS="1000", IMGSTACK_VERIFY_KEYS="k1, k2", IMGSTACK_REQUIRE_EXPIRES="yes")
    settings = Settings.of(config)
    assert Settings.of(config) is settings and Settings.of(Config()) is not settings
    assert (settings.max_pixels, settings.verify_keys, settings.require_expires) == (1000, ("k1", "k2"), True)
    with pytest.raises(AttributeError):
        settings.max_pixels = 1  # type: ignore[misc]
    assert "k1" not in repr(settings)  # keys and tokens are not printed


def test_every_setting_has_a_field_named_after_it_with_its_default() -> None:
    """IMGSTACK_X is ``x``, Thumbor's X is ``x``; the field's default is the definition's, so a
    Settings made with a few values is what a config with those values gives."""
    import dataclasses

    read = {item.metadata["name"]: item for item in dataclasses.fields(Settings) if "name" in item.metadata}
    ours = {name for name in Config.class_defaults if name.startswith("IMGSTACK_")}
    assert ours <= set(read), f"settings without a field in thumbor_plugins/settings.py: {sorted(ours - set(read))}"
    defaults = Settings.from_config(Config())
    for name, item in read.items():
        assert item.name == name.removeprefix("IMGSTACK_").lower(), name
        if name == "SECURITY_KEY":  # Thumbor's published default key means "not set"
            continue
        assert getattr(Settings(), item.name) == getattr(defaults, item.name), name


def test_every_setting_of_ours_is_documented_in_a_group() -> None:
    ours = [name for name in Config.class_defaults if name.startswith("IMGSTACK_")]
    assert len(ours) > 20
    for name in ours:
        assert Config.class_descriptions[name], name
        assert Config.class_groups and any(name in names for names in Config.class_group_items.values()), name


@pytest.mark.parametrize(("source", "key", "variant"), [
    (Source("images", "a.jpg"), "images/a.jpg/" + "0" * 40 + ".webp", True),
    (Source("images", "a.jpg"), "images/a.jpg/" + "f" * 40 + ".auto", True),
    # an original named like the folder of another: never each other's variants
    (Source("images", "a.jpg"), "images/a.jpg/b.jpg/" + "0" * 40 + ".webp", False),
    (Source("images", "samples"), "images/samples/portrait.jpg/" + "0" * 40 + ".jpeg", False),
    (Source("images", "photos"), "images/photos/x.jpg", False),
    (Source("images", "a.jpg"), "images/a.jpg/" + "0" * 40 + ".exe", False),
    (Source("images", "a.jpg"), "images/a.jpg/" + "0" * 39 + ".webp", False),
    (Source("images", "a"), "images/ab/" + "0" * 40 + ".webp", False),
])
def test_purge_names_exactly_the_variants_of_one_original(source: Source, key: str, variant: bool) -> None:
    from thumbor_plugins.derived import is_variant

    assert is_variant(source, key) is variant

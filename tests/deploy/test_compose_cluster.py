"""``docker-compose.cluster.yml``: distributed MinIO, an S3 balancer, Thumbor replicas behind the
cache — validated offline like the main file (no docker here), and checked against the main file
for what must stay the same (images, secrets, init script)."""

from __future__ import annotations

import pytest

from .conftest import (
    CLUSTER_FILE,
    MINIO_LB_CONF,
    REQUIRED_SECRETS,
    MissingVariable,
    compose_interpolations,
    default_of,
    env_example,
    fake_env,
    load_compose,
    schema_errors,
)

NODES = [f"minio{n}" for n in range(1, 5)]


def load_cluster(env: dict[str, str] | None = None) -> dict:
    return load_compose(env, CLUSTER_FILE)


@pytest.fixture(scope="module")
def services() -> dict:
    return load_cluster()["services"]


def test_cluster_file_matches_the_compose_spec_schema(compose_validator) -> None:
    assert schema_errors(compose_validator, load_cluster()) == []
    assert schema_errors(compose_validator, load_cluster(fake_env())) == []


def test_minio_is_distributed_over_four_nodes_of_two_drives(services) -> None:
    for node in NODES:
        service = services[node]
        assert service["command"][:2] == ["server", "http://minio{1...4}/data{1...2}"]
        assert service["hostname"] == node
        mounts = {volume.split(":")[1] for volume in service["volumes"]}
        assert {"/data1", "/data2"} <= mounts
        assert service["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]
    volumes = [volume.split(":")[0] for node in NODES for volume in services[node]["volumes"]]
    assert len(volumes) == len(set(volumes)), "two nodes share a volume"


def test_same_pinned_images_and_init_script_as_the_main_file(services) -> None:
    main = load_compose()["services"]
    for node in NODES:
        assert services[node]["image"] == main["minio"]["image"]
    assert services["minio-init"]["image"] == main["minio-init"]["image"]
    assert services["minio-init"]["entrypoint"] == main["minio-init"]["entrypoint"]
    assert services["cache"]["image"] == main["cache"]["image"] == services["minio-lb"]["image"]
    assert services["thumbor"]["build"] == main["thumbor"]["build"]
    for name, service in services.items():
        if "image" in service:
            assert not default_of(service["image"]).endswith(":latest") and ":" in default_of(service["image"]), name


def test_every_secret_is_required_and_none_is_literal() -> None:
    used = set()
    found = compose_interpolations(CLUSTER_FILE)
    for name, op, arg in found:
        if name in REQUIRED_SECRETS:
            used.add(name)
            assert op == ":?" and arg.strip(), name
    assert used == REQUIRED_SECRETS
    for missing in sorted(REQUIRED_SECRETS):
        env = fake_env()
        del env[missing]
        with pytest.raises(MissingVariable, match=missing):
            load_cluster(env)
    assert {name for name, _, _ in found} <= set(env_example()), "a variable missing from .env.example"


def test_thumbor_replicas_default_to_two_from_the_env_file(services) -> None:
    assert services["thumbor"]["deploy"]["replicas"] == "${THUMBOR_REPLICAS:-2}"
    assert env_example()["THUMBOR_REPLICAS"] == "2"
    assert load_cluster({**fake_env(), "THUMBOR_REPLICAS": "5"})["services"]["thumbor"]["deploy"]["replicas"] == "5"
    # replicas share no port: only the balancers are published
    assert "ports" not in services["thumbor"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"minio-lb", "cache"}


def test_everything_goes_through_the_balancers(services) -> None:
    assert services["thumbor"]["environment"]["IMGSTACK_S3_ENDPOINT_URL"] == "http://minio-lb:9000"
    assert services["minio-init"]["environment"]["MINIO_URL"] == "http://minio-lb:9000"
    for node in NODES:
        env = services[node]["environment"]
        # MinIO's events reach some replica through the cache's internal side
        assert env["MINIO_NOTIFY_WEBHOOK_ENDPOINT_THUMBOR"] == "http://cache:8081/events/minio"
        assert env["MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_THUMBOR"].startswith("/var/lib/minio-events")
    assert services["cache"]["depends_on"]["thumbor"]["condition"] == "service_healthy"
    assert "profiles" not in services["cache"]  # always on in the cluster


def test_the_s3_balancer_spreads_over_every_node_and_keeps_signatures_valid() -> None:
    conf = MINIO_LB_CONF.read_text()
    for node in NODES:
        assert f"server {node}:9000 resolve" in conf and f"server {node}:9001 resolve" in conf
    assert "least_conn;" in conf and "ip_hash;" in conf
    assert "proxy_set_header Host $http_host;" in conf  # SigV4 signs the Host header
    assert "client_max_body_size 0;" in conf and "proxy_request_buffering off;" in conf

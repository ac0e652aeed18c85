"""``deploy/kubernetes``: every manifest of the base and of the example overlay (as kustomize would
build it) validated offline with ``kubernetes-validate`` against a pinned Kubernetes version, and
wired together: selectors, probes, resources, secrets, the events route. No cluster needed."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT

kubernetes_validate = pytest.importorskip("kubernetes_validate",
                                          reason="kubernetes-validate not installed (test extra)")

KUBERNETES_VERSION = "1.33.0"
BASE = ROOT / "deploy" / "kubernetes" / "base"
OVERLAY = ROOT / "deploy" / "kubernetes" / "overlays" / "example"
CLUSTER_SCOPED = {"Namespace"}
#: keys of the Secret `imgstack` the manifests read (README "Kubernetes" says how to create it)
SECRET_KEYS = {"SECURITY_KEY", "IMGSTACK_EVENTS_TOKEN", "IMGSTACK_METRICS_TOKEN", "THUMBOR_S3_ACCESS_KEY",
               "THUMBOR_S3_SECRET_KEY", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}


def documents(folder: Path, names: list[str]) -> list[dict]:
    found = []
    for name in names:
        found.extend(doc for doc in yaml.safe_load_all((folder / name).read_text()) if doc)
    return found


def kustomization(folder: Path) -> dict:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def base() -> list[dict]:
    return documents(BASE, kustomization(BASE)["resources"])


def merge(target: dict, patch: dict) -> dict:
    """A strategic-merge patch as our patches use it: maps merge, anything else replaces."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def overlay() -> list[dict]:
    """The example overlay built the way kustomize builds it (the transformers it uses)."""
    spec = kustomization(OVERLAY)
    built = []
    for resource in spec["resources"]:
        built.extend(base() if resource == "../../base" else documents(OVERLAY, [resource]))
    built = copy.deepcopy(built)
    for doc in built:
        if doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = spec["namespace"]
    images = {image["name"]: f"{image['newName']}:{image['newTag']}" for image in spec.get("images", [])}
    for doc in built:
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            name = container["image"].rsplit(":", 1)[0]
            container["image"] = images.get(name, container["image"])
    for replica in spec.get("replicas", []):
        [target] = [d for d in built if d["metadata"]["name"] == replica["name"] and "replicas" in d["spec"]]
        target["spec"]["replicas"] = replica["count"]
    for entry in spec.get("patches", []):
        patch = yaml.safe_load((OVERLAY / entry["path"]).read_text())
        wanted = (patch["kind"], patch["metadata"]["name"])
        [target] = [d for d in built if (d["kind"], d["metadata"]["name"]) == wanted]
        merge(target, patch)
    return built


def by_kind(docs: list[dict], kind: str, name: str) -> dict:
    [found] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize("build", [base, overlay], ids=["base", "overlay"])
def test_every_manifest_is_valid_for_the_pinned_kubernetes(build) -> None:
    docs = build()
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_every_file_of_the_base_is_in_its_kustomization() -> None:
    listed = set(kustomization(BASE)["resources"])
    assert listed == {path.name for path in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    for entry in kustomization(OVERLAY).get("patches", []):
        assert (OVERLAY / entry["path"]).exists()


def test_thumbor_probes_resources_and_security() -> None:
    deployment = by_kind(base(), "Deployment", "thumbor")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthcheck/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthcheck"
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["limits"]["cpu"] and resources["limits"]["memory"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001  # the Dockerfile's
    assert ":" in container["image"] and not container["image"].endswith(":latest")


def test_selectors_autoscaler_budget_and_routes_fit_together() -> None:
    docs = base()
    labels = by_kind(docs, "Deployment", "thumbor")["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        doc = by_kind(docs, kind, "thumbor")
        selector = doc["spec"]["selector"].get("matchLabels", doc["spec"]["selector"])
        assert selector.items() <= labels.items(), kind
    hpa = by_kind(docs, "HorizontalPodAutoscaler", "thumbor")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "thumbor"}
    assert hpa["spec"]["minReplicas"] >= 2
    backend = by_kind(docs, "Ingress", "thumbor")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "thumbor"
    minio = by_kind(docs, "StatefulSet", "minio")
    assert minio["spec"]["replicas"] == 4 and len(minio["spec"]["volumeClaimTemplates"]) == 2
    args = minio["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[1].startswith("http://minio-{0...3}.minio-hl.") and args[1].endswith("/data{1...2}")
    env = {e["name"]: e.get("value") for e in minio["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MINIO_NOTIFY_WEBHOOK_ENDPOINT_THUMBOR"] == "http://thumbor:8888/events/minio"
    config = by_kind(docs, "ConfigMap", "imgstack-thumbor")["data"]
    assert config["IMGSTACK_S3_ENDPOINT_URL"] == "http://minio:9000"


def test_secrets_come_from_one_secret_and_never_from_the_manifests() -> None:
    used = set()
    for doc in base() + overlay():
        assert doc["kind"] != "Secret", "secrets are created by the operator, not committed"
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "imgstack"
                    used.add(ref["key"])
                elif any(word in env["name"] for word in ("PASSWORD", "SECRET", "TOKEN", "KEY")):
                    assert "$(" in str(env.get("value", "")), f"{env['name']} is a literal credential"
    assert used == SECRET_KEYS


def test_overlay_sets_namespace_image_host_and_scale() -> None:
    docs = overlay()
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"imgstack"}
    deployment = by_kind(docs, "Deployment", "thumbor")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].startswith("registry.example.com/")
    assert by_kind(docs, "Ingress", "thumbor")["spec"]["tls"][0]["hosts"] == ["img.mycompany.example"]
    assert by_kind(docs, "HorizontalPodAutoscaler", "thumbor")["spec"]["maxReplicas"] == 20

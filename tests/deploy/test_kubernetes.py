"""deploy/k8s: the kustomize base and the CPU overlay render with ``kubectl kustomize``,
and every rendered object passes ``kubernetes-validate --strict`` (the ServiceMonitor, a
custom resource it has no schema for, passes a strict JSON Schema of its own instead).
Then what no schema says: probes, replicas, autoscaling and disruption budget of the
gateway, GPU requests of the workers and their removal by the overlay, and that every
name one object refers to (selectors, Secret keys, the ConfigMap, ports) exists."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.validators import ROOT, run, tool

K8S = ROOT / "deploy" / "k8s"
SCHEMA = Path(__file__).with_name("servicemonitor.schema.json")

Objects = dict[tuple[str, str], dict[str, Any]]


def _render(path: Path, tmp: Path) -> tuple[Path, Objects]:
    out = run([tool("kubectl"), "kustomize", path])
    assert out.returncode == 0, out.stderr
    rendered = tmp / f"{path.name}.yaml"
    rendered.write_text(out.stdout)
    objects = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(out.stdout)}
    return rendered, objects


@pytest.fixture(scope="module", params=["base", "overlays/cpu"])
def rendered(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path, Objects]:
    path, objects = _render(K8S / request.param, tmp_path_factory.mktemp("k8s"))
    return request.param, path, objects


def test_every_file_of_the_base_is_in_its_kustomization() -> None:
    kustomization = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    files = {p.name for p in (K8S / "base").glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


def test_kubernetes_validate_strict_passes_every_built_in_object(
    rendered: tuple[str, Path, Objects],
) -> None:
    _, path, objects = rendered
    out = run([tool("kubernetes-validate"), "--strict", path])
    assert out.returncode == 0, out.stdout + out.stderr
    passed = set(re.findall(r"^INFO \S+ passed for resource (\S+) against", out.stdout, re.M))
    built_in = {f"{kind.lower()}/{name}" for kind, name in objects if kind != "ServiceMonitor"}
    assert passed == built_in, out.stdout
    warnings = [line for line in out.stdout.splitlines() if line.startswith("WARN")]
    assert len(warnings) == 1, out.stdout
    assert "kind ServiceMonitor with api version monitoring.coreos.com/v1" in warnings[0]


def test_the_service_monitor_passes_its_schema_and_finds_both_services(
    rendered: tuple[str, Path, Objects],
) -> None:
    _, _, objects = rendered
    monitor = objects["ServiceMonitor", "modelgate"]
    jsonschema.validate(monitor, json.loads(SCHEMA.read_text()))
    selected = [o for (kind, _), o in objects.items() if kind == "Service"
                and _selects(monitor["spec"]["selector"], o["metadata"]["labels"])]  # fmt: skip
    assert sorted(s["metadata"]["name"] for s in selected) == [
        "modelgate-gateway", "modelgate-worker"
    ]  # fmt: skip
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["path"] == "/metrics"
        for service in selected:
            assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        present = labels.get(expression["key"])
        if expression["operator"] == "In" and present not in expression["values"]:
            return False
    return True


def _pod(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    template: dict[str, Any] = objects[kind, name]["spec"]["template"]
    return template


def test_the_gateway_deployment_probes_scales_and_keeps_two_up(
    rendered: tuple[str, Path, Objects],
) -> None:
    _, _, objects = rendered
    deployment = objects["Deployment", "modelgate-gateway"]
    # NOTE: the HPA owns the scale: a `replicas` here would reset it on every apply.
    assert "replicas" not in deployment["spec"], deployment["spec"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    hpa = objects["HorizontalPodAutoscaler", "modelgate-gateway"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "modelgate-gateway"
    }  # fmt: skip
    assert hpa["spec"]["minReplicas"] >= 3
    pdb = objects["PodDisruptionBudget", "modelgate-gateway"]
    assert pdb["apiVersion"] == "policy/v1"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert _selects(pdb["spec"]["selector"], pod_labels)
    assert _selects({"matchLabels": objects["Service", "modelgate-gateway"]["spec"]["selector"]},
                    pod_labels)  # fmt: skip


def test_workers_request_a_gpu_in_the_base_and_none_in_the_cpu_overlay(
    rendered: tuple[str, Path, Objects],
) -> None:
    name, _, objects = rendered
    container = _pod(objects, "Deployment", "modelgate-worker")["spec"]["containers"][0]
    args = container["args"]
    resources = container["resources"]
    provider = args[args.index("--providers") + 1]
    gateway = _pod(objects, "Deployment", "modelgate-gateway")["spec"]["containers"][0]
    if name == "base":
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == 1
        assert provider == "cuda"
        assert container["image"] != gateway["image"]
    else:
        assert "nvidia.com/gpu" not in json.dumps(objects["Deployment", "modelgate-worker"])
        assert provider == "cpu"
        assert container["image"] == gateway["image"]  # the CPU image


def test_every_pod_runs_as_non_root_with_resources_and_its_references_exist(
    rendered: tuple[str, Path, Objects],
) -> None:
    _, _, objects = rendered
    secret_keys = set(objects["Secret", "modelgate-secrets"]["stringData"])
    job = _pod(objects, "Job", "modelgate-migrate")
    assert job["spec"]["containers"][0]["args"] == ["db", "upgrade"]
    pods = [_pod(objects, kind, name) for kind, name in objects if kind in ("Deployment", "Job")]
    assert len(pods) == 3
    for pod in pods:
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001  # the images' user
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert ("PersistentVolumeClaim", claim) in objects
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["resources"]["requests"]["memory"]
            assert container["resources"]["limits"]["memory"]
            for source in container.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in objects
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ref["name"] == "modelgate-secrets"
                    assert ref["key"] in secret_keys

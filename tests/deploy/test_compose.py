"""docker-compose.yml: Docker Compose's own ``config`` accepts it (with and without the gpu
profile), and what it renders is deployable as shipped, which no schema can say: every
long-running service has a healthcheck and a restart policy, migrations run before the
gateways, three gateway replicas sit behind a health-checking load balancer on one port,
the workers wait for the version the seed step publishes, and the GPU worker reserves a
GPU on a CUDA image. The load balancer's configuration passes ``haproxy -c``."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import pytest

from tests.support.validators import ROOT, compose, run, tool

ONE_SHOT = {"migrate", "seed"}
HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    """The model compose renders (anchors merged, defaults interpolated), gpu profile on."""
    out = run([compose(), "-f", "docker-compose.yml", "--profile", "gpu", "config",
               "--format", "json"])  # fmt: skip
    assert out.returncode == 0, out.stderr
    model: dict[str, Any] = json.loads(out.stdout)
    return model


@pytest.mark.parametrize("profile", [[], ["--profile", "gpu"]], ids=["default", "gpu"])
def test_docker_compose_config_accepts_the_file(profile: list[str]) -> None:
    version = run([compose(), "version", "--short"])
    assert version.returncode == 0, version.stderr
    out = run([compose(), "-f", "docker-compose.yml", *profile, "config", "--quiet"])
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr  # no warning either (an unset variable, say)


def test_every_long_running_service_has_a_healthcheck_and_a_restart_policy(
    rendered: dict[str, Any],
) -> None:
    services = rendered["services"]
    assert {n for n, s in services.items() if s.get("restart") == "no"} == ONE_SHOT
    for name, service in services.items():
        if name in ONE_SHOT:
            continue
        assert service.get("restart") == "unless-stopped", name
        check = service.get("healthcheck") or {}
        assert check.get("test"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert not check.get("disable"), name


def test_migrations_run_before_the_gateways_the_seed_and_the_workers(
    rendered: dict[str, Any],
) -> None:
    services = rendered["services"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("gateway", "seed", "worker-1", "worker-2", "worker-gpu"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name


def test_three_gateway_replicas_behind_a_health_checking_balancer_on_one_port(
    rendered: dict[str, Any],
) -> None:
    services = rendered["services"]
    assert services["gateway"]["deploy"]["replicas"] == 3
    published = {n: s["ports"] for n, s in services.items() if s.get("ports")}
    assert list(published) == ["lb"]
    assert [p["target"] for p in published["lb"]] == [8000]
    mounts = {v["target"]: v["source"] for v in services["lb"]["volumes"]}
    assert mounts["/usr/local/etc/haproxy/haproxy.cfg"] == str(HAPROXY_CFG)
    config = HAPROXY_CFG.read_text()
    assert re.search(r"^\s*server-template \S+ [3-9] gateway:8000$", config, re.M)
    assert re.search(r"^\s*default-server check .*resolvers docker", config, re.M)
    assert "http-check send meth GET uri /v2/health/ready" in config
    assert "http-reuse always" in config  # keep-alive to the gateways


def haproxy_sections(config: str) -> dict[str, list[str]]:
    """Each section (``frontend modelgate``, ``backend gateways``, ...) with its lines,
    without comments."""
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in config.splitlines():
        text = line.split("#", 1)[0].rstrip()
        if not text:
            continue
        if not text[0].isspace():
            current = found.setdefault(text, [])
        else:
            current.append(text.strip())
    return found


def test_a_browser_keeps_to_one_replica_for_the_dashboard() -> None:
    """The dashboard shows the memory of the replica that answers: ``/ui`` goes to a
    backend of the same gateways that sends a client to the same one every time."""
    sections = haproxy_sections(HAPROXY_CFG.read_text())
    frontend = sections["frontend modelgate"]
    assert "use_backend gateways_ui if { path_beg /ui }" in frontend
    assert "default_backend gateways" in frontend
    ui, data = sections["backend gateways_ui"], sections["backend gateways"]
    assert "balance source" in ui or "cookie SERVERID insert indirect nocache" in ui
    servers = [line for line in data if line.startswith(("server-template", "default-server"))]
    assert servers
    assert all(line in ui for line in servers)  # the same replicas, checked alike
    assert [line for line in data if line.startswith("http-check")] == [
        line for line in ui if line.startswith("http-check")
    ]


def test_haproxy_accepts_the_balancer_configuration() -> None:
    out = run([tool("haproxy"), "-c", "-f", HAPROXY_CFG])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Configuration file is valid" in out.stdout
    assert "WARNING" not in out.stdout + out.stderr, out.stdout + out.stderr


def _seeded(services: dict[str, Any]) -> set[str]:
    command = services["seed"]["command"]
    assert command[0] == "seed"
    model = command[command.index("--model") + 1]
    return {f"{model}@{v}" for i, v in enumerate(command) if command[i - 1] == "--version"}


def test_workers_wait_for_the_versions_the_seed_step_publishes(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    seeded = _seeded(services)
    assert seeded
    for name in ("worker-1", "worker-2", "worker-gpu"):
        service = services[name]
        command = service["command"]
        assert command[0] == "worker", name
        assert command[command.index("--load") + 1] in seeded, name
        assert float(service["environment"]["MODELGATE_WORKER_LOAD_WAIT_S"]) > 0, name
        assert "ready" in " ".join(service["healthcheck"]["test"]), name
    text = (ROOT / "docker-compose.yml").read_text()
    assert "WORKER_LOADS" not in text
    assert "${WORKER_LOAD_1:-" in text
    assert "${WORKER_LOAD_2:-" in text


def test_the_gpu_worker_reserves_a_gpu_on_a_cuda_image(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert "--providers" in gpu["command"]
    assert "cuda" in gpu["command"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    ]
    assert gpu["build"]["dockerfile"] == "Dockerfile.gpu"
    dockerfile = (ROOT / "Dockerfile.gpu").read_text()
    base = re.search(r"^ARG CUDA_IMAGE=(\S+)$", dockerfile, re.M)
    assert base
    assert re.fullmatch(r"nvidia/cuda:1[23]\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.04", base[1])
    assert re.search(r'pip install \. "onnxruntime-gpu==\$\{ORT_GPU_VERSION\}"', dockerfile)
    for name, service in services.items():
        if name != "worker-gpu" and "build" in service:
            assert service["build"]["dockerfile"] == "Dockerfile", name
            assert "devices" not in json.dumps(service.get("deploy", {})), name


def test_the_cpu_image_swaps_onnxruntime_gpu_for_the_cpu_build() -> None:
    run_lines = [shlex.split(line.replace("\\", " "))
                 for line in (ROOT / "Dockerfile").read_text().split("\nRUN ")[1:]]  # fmt: skip
    words = [w for line in run_lines for w in line]
    assert "onnxruntime-gpu" in words[words.index("uninstall") :]
    assert any(w.startswith("onnxruntime~=") for w in words)

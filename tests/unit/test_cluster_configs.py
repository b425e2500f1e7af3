"""The `ray up` cluster configs and the KubeRay manifest in deploy/ are valid, and fit
the raylane config they deploy (Ray's own schemas; no cloud, no Ray cluster)."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from raylane.cluster.config import load_config
from raylane.cluster.placement import NodeGroup, check_placement
from raylane.cluster.runtime import THROUGHPUT_ENV
from raylane.cluster.serve_config import IMPORT_PATH, serve_config

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
CLUSTER_CONFIGS = sorted(p for p in DEPLOY.glob("*.yaml")
                         if not p.name.startswith(("raylane", "kuberay")))
CLOUDS = [p for p in CLUSTER_CONFIGS if p.name in ("aws.yaml", "gcp.yaml")]
# What operators start from; local-test.yaml is deploy/try-ray-up.sh's, on one machine.
SHIPPED = [*CLOUDS, DEPLOY / "local.yaml"]
KUBERAY = DEPLOY / "kuberay-rayservice.yaml"


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def test_every_deploy_yaml_has_one_kind() -> None:
    """raylane configs are deploy/raylane*.yaml (test_deploy_configs.py), cluster configs
    have a `provider`, and nothing else lies there."""
    assert {p.name for p in CLUSTER_CONFIGS} >= {"aws.yaml", "gcp.yaml", "local.yaml"}
    for path in CLUSTER_CONFIGS:
        assert "provider" in load(path), path.name
    for path in DEPLOY.glob("raylane*.yaml"):
        assert "provider" not in load(path) and "models" in load(path), path.name


@pytest.mark.parametrize("path", CLUSTER_CONFIGS, ids=[p.name for p in CLUSTER_CONFIGS])
def test_cluster_config_passes_rays_schema(path: Path) -> None:
    """What `ray up` does to a config before it starts anything: validate it, fill in the
    provider's defaults, validate again."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load(path)
    validate_config(config)
    validate_config(prepare_config(copy.deepcopy(config)))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_cluster_config_installs_and_deploys_raylane(path: Path) -> None:
    config = load(path)
    assert config["file_mounts"]["~/raylane"] == "."
    assert ".venv" in config["rsync_exclude"]
    installs = " ".join(config["setup_commands"])
    assert "pip install" in installs and "raylane" in installs
    deploy = config["head_start_ray_commands"][-1]
    assert "deploy/head-start.sh" in deploy
    shipped = deploy.split()[-1].removeprefix("~/raylane/")
    load_config(ROOT / shipped)  # the raylane config it deploys exists and is valid
    assert any("--head" in c for c in config["head_start_ray_commands"])
    assert any("$RAY_HEAD_IP" in c for c in config["worker_start_ray_commands"])


@pytest.mark.parametrize("path", CLOUDS, ids=[p.name for p in CLOUDS])
def test_cloud_node_types(path: Path) -> None:
    """A CPU head that takes no replicas, 1-GPU and 4-GPU node types that install vLLM,
    CPU workers, each with autoscaler bounds."""
    config = load(path)
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}
    assert types["gpu-1"]["resources"]["GPU"] == 1
    assert types["gpu-4"]["resources"]["GPU"] >= 4
    assert "GPU" not in types["cpu"]["resources"]
    for name in ("gpu-1", "gpu-4", "cpu"):
        assert 0 <= types[name]["min_workers"] <= types[name]["max_workers"]
    for name in ("gpu-1", "gpu-4"):
        assert any("raylane[vllm]" in c for c in types[name]["worker_setup_commands"])


@pytest.mark.parametrize("path", CLOUDS, ids=[p.name for p in CLOUDS])
def test_shipped_raylane_config_fits_the_node_types(path: Path) -> None:
    """Every pool of the deployed config fits some node type the autoscaler may add (the
    check `raylane deploy` makes on the cluster)."""
    config = load(path)
    groups = [NodeGroup({k: float(v) for k, v in t["resources"].items()}, t["max_workers"])
              for name, t in config["available_node_types"].items()
              if name != config["head_node_type"]]
    check_placement(load_config(DEPLOY / "raylane-cluster.yaml"), [{"CPU": 0.0}], groups)


def test_head_start_script_is_shipped() -> None:
    script = DEPLOY / "head-start.sh"
    assert script.stat().st_mode & 0o111
    assert "raylane deploy" in script.read_text()


def test_every_ray_start_gets_serves_throughput_settings() -> None:
    """Every node of a `ray up` cluster starts Ray with the settings `raylane serve` gives
    the Ray it starts itself."""
    exports = dict(line.removeprefix("export ").split("=", 1)
                   for line in (DEPLOY / "serve-env.sh").read_text().splitlines()
                   if line.startswith("export "))
    assert exports == THROUGHPUT_ENV
    for path in CLUSTER_CONFIGS:
        config = load(path)
        starts = [c for key in ("head_start_ray_commands", "worker_start_ray_commands")
                  for c in config[key] if "ray start" in c]
        assert len(starts) == 2, path.name
        for command in starts:
            before, _ = command.split("ray start")
            assert "/deploy/serve-env.sh;" in before, (path.name, command)


def test_every_kuberay_pod_gets_serves_throughput_settings() -> None:
    cluster = kuberay_service()["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        (container,) = group["template"]["spec"]["containers"]
        assert {e["name"]: e["value"] for e in container["env"]} == THROUGHPUT_ENV


def kuberay_service() -> dict[str, Any]:
    documents = [d for d in yaml.safe_load_all(KUBERAY.read_text()) if d]
    (service,) = [d for d in documents if d["kind"] == "RayService"]
    assert service["apiVersion"] == "ray.io/v1"
    return service


def serve_deploy_schema() -> Any:
    """Ray Serve's own schema of a Serve config (what `serve deploy` validates with)."""
    with warnings.catch_warnings():  # Ray Serve's pydantic models warn on import
        warnings.simplefilter("ignore", DeprecationWarning)
        from ray.serve.schema import ServeDeploySchema
    return ServeDeploySchema


def test_kuberay_serve_config_is_raylane_build_of_the_named_config() -> None:
    service = kuberay_service()
    embedded = yaml.safe_load(service["spec"]["serveConfigV2"])
    serve_deploy_schema().model_validate(embedded)
    command = service["metadata"]["annotations"]["raylane.dev/build"].split()
    assert command[:2] == ["raylane", "build"] and command[3:] == ["--no-placement-check"]
    assert embedded == serve_config(ROOT / command[2], check_placement=False)
    assert embedded["applications"][0]["args"]["check_placement"] is False
    assert embedded["applications"][0]["import_path"] == IMPORT_PATH


def test_kuberay_cluster_has_cpu_head_and_gpu_groups() -> None:
    cluster = kuberay_service()["spec"]["rayClusterConfig"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    gpus = {}
    for group in cluster["workerGroupSpecs"]:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        gpus[group["groupName"]] = int(limits.get("nvidia.com/gpu", 0))
        assert group["minReplicas"] <= group["maxReplicas"]
    assert gpus == {"gpu-1": 1, "gpu-4": 4, "cpu": 0}
    redis = serve_config(DEPLOY / "raylane-cluster.yaml")["applications"][0]["args"]
    assert redis["redis_url"].startswith("redis://raylane-redis:")  # the manifest's Service

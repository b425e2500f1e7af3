"""Where pools go on Ray, and which configs the start-time check refuses (no Ray here)."""

from __future__ import annotations

import pytest

from raylane.cluster.app import pool_options
from raylane.cluster.config import Config, ModelConfig, PoolConfig, Replicas, parse_config
from raylane.cluster.placement import NodeGroup, PlacementError, check_placement
from raylane.cluster.yamlpos import ConfigError

GPU_NODE = {"CPU": 8.0, "GPU": 2.0, "memory": 64e9}
CPU_NODE = {"CPU": 4.0, "memory": 16e9}


def config(*pools: PoolConfig) -> Config:
    return Config(models=[ModelConfig(name="x", pools=list(pools))])


def tp(n: int, replicas: int = 1, **resources: float) -> PoolConfig:
    return PoolConfig(backend="sim", name="vllm-0", tensor_parallel=n,
                      resources=resources or {"GPU": 1.0, "CPU": 1.0},
                      replicas=Replicas(min=replicas, max=max(1, replicas)))


def test_one_rank_pools_deploy_as_before() -> None:
    options = pool_options(PoolConfig(backend="sim", resources={"CPU": 2.0, "GPU": 1.0}))
    assert options == {"num_replicas": 1,
                       "ray_actor_options": {"num_cpus": 2.0, "num_gpus": 1.0}}


def test_a_tensor_parallel_replica_is_one_strictly_packed_group() -> None:
    options = pool_options(tp(4, replicas=2))
    assert options["num_replicas"] == 2
    assert options["placement_group_strategy"] == "STRICT_PACK"
    # The replica actor takes CPU only, in bundle 0; every rank keeps its GPU.
    assert options["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 0.0}
    assert options["placement_group_bundles"] == [
        {"GPU": 1.0, "CPU": 2.0}, {"GPU": 1.0, "CPU": 1.0}, {"GPU": 1.0, "CPU": 1.0},
        {"GPU": 1.0, "CPU": 1.0}]


def test_custom_resources_are_per_rank_not_per_replica_actor() -> None:
    options = pool_options(tp(2, GPU=1.0, accel_a100=0.001))
    assert options["ray_actor_options"] == {"num_cpus": 0.0, "num_gpus": 0.0}
    assert options["placement_group_bundles"] == [{"GPU": 1.0, "accel_a100": 0.001}] * 2


def test_a_group_larger_than_any_node_is_refused_with_the_reason() -> None:
    with pytest.raises(PlacementError) as error:
        check_placement(config(tp(4)), [GPU_NODE] * 3)
    assert str(error.value) == (
        "models[0].pools[0] (model 'x', pool 'vllm-0'): tensor_parallel 4 needs 4 bundles of "
        "{GPU: 1, CPU: 1} on ONE node (STRICT_PACK; bundle 0 also holds the replica's "
        "{CPU: 1}), {GPU: 4, CPU: 5} in all, but the largest node has 2 GPU")


def test_more_replicas_than_the_cluster_holds_are_refused() -> None:
    with pytest.raises(PlacementError) as error:
        check_placement(config(tp(4, replicas=2)), [{"CPU": 16.0, "GPU": 4.0},
                                                   {"CPU": 16.0, "GPU": 2.0}])
    assert str(error.value).endswith(
        "2 replicas (replicas.min 2) of {GPU: 4} each need {GPU: 8} in all, "
        "but the cluster has {GPU: 6}")


def test_enough_gpus_in_all_but_not_per_node_is_refused() -> None:
    # 8 GPUs in all, but only one node can take a whole 4-GPU replica.
    nodes = [{"CPU": 16.0, "GPU": 4.0}, {"CPU": 16.0, "GPU": 2.0}, {"CPU": 16.0, "GPU": 2.0}]
    with pytest.raises(PlacementError) as error:
        check_placement(config(tp(4, replicas=2)), nodes)
    assert str(error.value).endswith("2 replicas (replicas.min 2) of {GPU: 4, CPU: 5}, each on "
                                     "one node, but the nodes have room for only 1")


def test_replicas_that_fit_pass() -> None:
    check_placement(config(tp(2, replicas=2)), [CPU_NODE, GPU_NODE, GPU_NODE])
    check_placement(config(tp(2, replicas=2)), [{"CPU": 8.0, "GPU": 4.0}])


def test_a_gpu_pool_on_a_cpu_only_cluster_is_refused() -> None:
    pool = PoolConfig(backend="sim", resources={"GPU": 1.0})
    with pytest.raises(PlacementError, match=r"a replica needs \{GPU: 1\} on one node, but the "
                                             r"largest node has 0 GPU"):
        check_placement(config(pool), [CPU_NODE])


def test_replicas_min_zero_still_needs_room_for_the_one_replica_serve_starts() -> None:
    pool = PoolConfig(backend="sim", resources={"CPU": 5.0}, replicas=Replicas(min=0, max=2))
    check_placement(config(pool), [CPU_NODE, {"CPU": 5.0}])
    with pytest.raises(PlacementError, match="largest node has 4 CPU"):
        check_placement(config(pool), [CPU_NODE, CPU_NODE])


def test_pools_that_each_fit_but_not_together_are_refused() -> None:
    a = PoolConfig(backend="sim", name="a", resources={"CPU": 3.0})
    b = PoolConfig(backend="sim", name="b", resources={"CPU": 2.0})
    with pytest.raises(PlacementError, match=r"the pools together need \{CPU: 5\}, the "
                                             r"cluster has \{CPU: 4\}"):
        check_placement(config(a, b), [CPU_NODE])


def test_node_types_an_autoscaler_may_start_count_as_room() -> None:
    pools = config(tp(4, replicas=3))
    check_placement(pools, [CPU_NODE], [NodeGroup({"CPU": 32, "GPU": 8}, max_count=2)])
    check_placement(pools, [CPU_NODE], [NodeGroup({"CPU": 32, "GPU": 4}, max_count=-1)])
    with pytest.raises(PlacementError, match="the cluster has"):
        check_placement(pools, [CPU_NODE], [NodeGroup({"CPU": 32, "GPU": 4}, max_count=2)])
    with pytest.raises(PlacementError, match="largest node has 2 GPU"):
        check_placement(pools, [CPU_NODE], [NodeGroup(GPU_NODE, max_count=-1)])


def test_a_placement_error_is_a_config_error_the_cli_prints() -> None:
    assert issubclass(PlacementError, ConfigError)


@pytest.mark.parametrize(("value", "message"), [
    ("tensor_parallel: 0", "tensor_parallel: must be at least 1"),
    ("tensor_parallel: 2\n        resources: {CPU: 0}", "resources: tensor_parallel above 1"),
])
def test_tensor_parallel_is_validated(value: str, message: str) -> None:
    text = f"models:\n  - name: m\n    pools:\n      - backend: sim\n        {value}\n"
    with pytest.raises(ConfigError, match=f"x.yaml:[56]: models\\[0\\].pools\\[0\\].{message}"):
        parse_config(text, "x.yaml")

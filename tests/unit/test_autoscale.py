"""Which pools autoscale, with what Serve options, and the config errors of the new keys."""

from __future__ import annotations

import pytest

from raylane.cluster.app import scaling_options
from raylane.cluster.autoscale import POLICY, desired_replicas, shared_share
from raylane.cluster.config import parse_config
from raylane.cluster.yamlpos import ConfigError

CONFIG = """\
models:
  - name: m
    pools:
      - {backend: sim, name: fixed, replicas: {min: 2, max: 2}}
      - backend: sim
        name: elastic
        slots: 4
        replicas: {min: 0, max: 5, upscale_delay_s: 1, downscale_delay_s: 3, idle_s: 30}
"""


def test_a_pool_with_min_equal_to_max_keeps_a_fixed_replica_count() -> None:
    model = parse_config(CONFIG).models[0]
    options = scaling_options(model, 0, "redis://r:6379/0", "p")
    assert options["num_replicas"] == 2
    assert "autoscaling_config" not in options


def test_a_pool_with_min_below_max_scales_with_the_queue_policy() -> None:
    model = parse_config(CONFIG).models[0]
    options = scaling_options(model, 1, "redis://r:6379/0", "p")
    assert "num_replicas" not in options
    scaling = options["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["max_replicas"], scaling["initial_replicas"]) == (
        0, 5, 0)
    assert (scaling["upscale_delay_s"], scaling["downscale_delay_s"],
            scaling["downscale_to_zero_delay_s"]) == (1, 3, 30)
    assert scaling["policy"]["policy_function"] == POLICY
    kwargs = scaling["policy"]["policy_kwargs"]
    assert (kwargs["pool"], kwargs["target_jobs"], kwargs["redis_url"]) == (
        "elastic", 4, "redis://r:6379/0")  # target_jobs defaults to the pool's slots
    assert kwargs["before"] == [["fixed", 2]]  # the earlier pool takes the backlog first


def test_the_rule() -> None:
    assert desired_replicas(0, 0, 2, [0, 4]) == 0
    assert desired_replicas(3, 0, 2, [0, 4]) == 2
    assert desired_replicas(1, 0, 2, [1, 4]) == 1
    assert desired_replicas(100, 3, 2, [0, 4]) == 4
    assert shared_share(10, {"a": 1}, [["a", 4]]) == 7
    assert shared_share(2, {}, [["a", 4]]) == 0


@pytest.mark.parametrize(("line", "key", "message"), [
    ("target_jobs: 0", "target_jobs", "must be at least 1"),
    ("upscale_delay_s: -1", "upscale_delay_s", "must not be negative"),
    ("downscale_delay_s: -1", "downscale_delay_s", "must not be negative"),
    ("idle_s: -1", "idle_s", "must not be negative"),
    ("min: 3", "max", "must be at least 3"),
])
def test_bad_scaling_keys_are_named(line: str, key: str, message: str) -> None:
    text = f"models:\n  - name: m\n    pools:\n      - backend: sim\n        replicas:\n" \
           f"          max: 2\n          {line}\n"
    with pytest.raises(ConfigError, match=rf"models\[0\].pools\[0\].replicas.{key}: {message}"):
        parse_config(text)


def test_an_overflow_pool_cannot_scale_to_zero() -> None:
    with pytest.raises(ConfigError, match=r"pools\[1\].replicas.min: an overflow pool needs "
                                          r"at least 1"):
        parse_config("models: [{name: m, pools: [{backend: sim}, {backend: sim, overflow: "
                     "true, replicas: {min: 0, max: 2}}]}]\n")


def test_the_router_takes_no_scaling_keys() -> None:
    with pytest.raises(ConfigError, match=r"router.replicas.idle_s: unknown key"):
        parse_config("router: {replicas: {idle_s: 3}}\nmodels: [{name: m, pools: "
                     "[{backend: sim}]}]\n")

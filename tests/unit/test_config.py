"""Config files: what a person writes, and the errors they get when it is wrong."""

from __future__ import annotations

import pytest

from raylane.cluster.config import default_config, load_config, parse_config, woken
from raylane.cluster.yamlpos import ConfigError

GOOD = """\
redis: {url: redis://10.0.0.5:6379/0}
router:
  host: 0.0.0.0
  port: 9000
  replicas: {min: 1, max: 4}
models:
  - name: smollm2-135m
    aliases: [gpt-4o-mini]
    queue: {max_depth: 50, timeout_s: 12.5, default_priority: 3}
    pools:
      - backend: llama.cpp
        model: bundled:smollm2-135m
        options: {n_ctx: 1024, n_threads: 2}
        slots: 2
        resources: {CPU: 2}
        replicas: {min: 1, max: 3}
      - backend: sim
        name: overflow
        options: {tokens_per_s: 100}
        priorities: [5, null]
"""


def test_a_full_config_loads_with_every_value() -> None:
    config = parse_config(GOOD)
    assert config.redis.url == "redis://10.0.0.5:6379/0"
    assert (config.router.host, config.router.port, config.router.replicas.max) == (
        "0.0.0.0", 9000, 4)
    model = config.models[0]
    assert config.model("gpt-4o-mini") is model
    assert (model.queue.max_depth, model.queue.timeout_s, model.queue.default_priority) == (
        50, 12.5, 3)
    llama, sim = model.pools
    assert llama.options == {"n_ctx": 1024, "n_threads": 2}
    assert (llama.slots, llama.resources, llama.replicas.max) == (2, {"CPU": 2.0}, 3)
    assert sim.name == "overflow" and sim.priorities == (5, None)


def test_defaults_serve_the_bundled_model() -> None:
    config = default_config()
    assert config.redis.url is None
    assert config.router.port == 8000
    (pool,) = config.models[0].pools
    assert (pool.backend, pool.model) == ("llama.cpp", "bundled:smollm2-135m")
    assert load_config(None) == config


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("slots: 2", "slotz: 2"), ":14: models[0].pools[0].slotz: unknown key"),
        (("port: 9000", "port: nine"), ":4: router.port: Expected `int`, got `str`"),
        (("n_ctx: 1024", "n_cxt: 1024"), ":13: models[0].pools[0].options.n_cxt: unknown option"),
        (("backend: sim", "backend: vllm2"), ":17: models[0].pools[1].backend: Invalid enum"),
        (("max_depth: 50", "max_depth: 0"), ":9: models[0].queue.max_depth: must be at least 1"),
        (("max: 3", "max: 0"), ":16: models[0].pools[0].replicas.max: must be at least 1"),
        (("[5, null]", "[5, 1]"), ":20: models[0].pools[1].priorities: the first bound"),
        (("slots: 2", "slots: 2\n        stream_interval_s: -0.05"),
         ":15: models[0].pools[0].stream_interval_s: must lie in [0, 10] seconds"),
        (("aliases: [gpt-4o-mini]", "aliases: [smollm2-135m]"),
         ":8: models[0].aliases[0]: model name 'smollm2-135m' is already used"),
        (("name: overflow", "name: ~light"),
         ":18: models[0].pools[1].name: pool names may not begin with '~'"),
        (("port: 9000", "port: 9000\n  ingress: direct"),
         ":5: router.ingress: direct serves one router replica on the port; with replicas.max 4"),
        (("port: 9000", "port: 9000\n  ingress: haproxy"),
         ":5: router.ingress: Invalid enum value 'haproxy'"),
    ],
)
def test_a_bad_key_is_named_with_its_line(edit: tuple[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(GOOD.replace(*edit), "raylane.yaml")
    assert str(error.value).startswith("raylane.yaml" + expected)


def test_llama_cpp_pools_must_name_their_weights() -> None:
    with pytest.raises(ConfigError, match=r":11: models\[0\].pools\[0\].model: required"):
        parse_config(GOOD.replace("        model: bundled:smollm2-135m\n", ""), "x.yaml")


def test_missing_required_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"x.yaml:1: models: required key is missing"):
        parse_config("router: {port: 1}\n", "x.yaml")


def test_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(ConfigError, match=r"x.yaml:2: not valid YAML"):
        parse_config("models:\n\t- name: x\n", "x.yaml")


def test_unreadable_file_is_reported(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")


def test_a_job_wakes_the_pools_that_may_take_it() -> None:
    model = parse_config("""\
models:
  - name: m
    pools:
      - {backend: sim, name: main}
      - {backend: sim, name: batch, priorities: [5, null]}
      - {backend: sim, name: spill, overflow: true}
""").models[0]
    assert woken(model, 0) == ["main"]  # the shared queue, a priority only main takes
    assert woken(model, 7) == ["main", "batch"]
    assert woken(model, 0, pool="spill") == ["spill"]  # routed to the overflow pool's queue

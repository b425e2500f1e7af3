"""The Ray Serve settings `raylane serve` gives the Ray it starts."""

from __future__ import annotations

import os
import socket

import pytest

from raylane.cluster.config import Replicas, RouterConfig
from raylane.cluster.runtime import HAPROXY_PORTS as PORTS
from raylane.cluster.runtime import (
    THROUGHPUT_ENV,
    check_port_free,
    direct_ingress,
    environment,
    serve_env,
)
from raylane.cluster.yamlpos import ConfigError


def test_serves_proxy_gets_the_throughput_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in THROUGHPUT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("RAY_SERVE_ENABLE_HA_PROXY", raising=False)
    assert serve_env() == {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
                           "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
                           "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1"}
    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "0")
    assert serve_env() == THROUGHPUT_ENV


def test_haproxy_gets_ports_of_its_own_and_a_short_drain(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "1")
    for name in PORTS:
        monkeypatch.delenv(name, raising=False)
    for _ in range(20):
        env = serve_env()
        assert env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "2"
        # Fixed ports (8404, 9101, 8500, 9500) would clash between two raylanes on one
        # host; and one port twice would keep HAProxy from starting.
        ports = [int(env[name]) for name in PORTS]
        assert len(set(ports)) == len(ports)
        assert not {8404, 9101, 8500, 9500} & set(ports)


def test_what_the_caller_set_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "1")
    monkeypatch.setenv("RAY_SERVE_HAPROXY_STATS_PORT", "18404")
    monkeypatch.setenv("RAY_SERVE_USE_GRPC_BY_DEFAULT", "0")
    env = serve_env()
    assert "RAY_SERVE_HAPROXY_STATS_PORT" not in env
    assert "RAY_SERVE_USE_GRPC_BY_DEFAULT" not in env


def test_the_settings_are_set_only_while_ray_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAYLANE_TEST_SETTING", raising=False)
    with environment({"RAYLANE_TEST_SETTING": "1"}):
        assert os.environ["RAYLANE_TEST_SETTING"] == "1"
    assert "RAYLANE_TEST_SETTING" not in os.environ


def test_direct_ingress_puts_the_router_replica_on_the_port(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.delenv("RAY_SERVE_ENABLE_HA_PROXY", raising=False)
    env = serve_env(direct_port=8123)
    assert env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    # Serve hands out ports of [min, max): the router's alone.
    assert (env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"],
            env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"]) == ("8123", "8124")
    # A restarted router replica takes its port back at once; a stopping one does not
    # hold its port open for load balancers that are not there.
    assert env["RAY_SERVE_PORT_QUARANTINE_S"] == "0"
    assert env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "0"
    assert "RAY_SERVE_ENABLE_DIRECT_INGRESS" not in serve_env()


@pytest.mark.parametrize(
    ("ingress", "replicas", "own_ray", "haproxy", "direct"),
    [
        ("auto", 1, True, False, True),
        ("auto", 2, True, False, False),  # Serve's proxy balances several replicas
        ("auto", 1, False, False, False),  # a running Ray's ingress was set as it started
        ("auto", 1, True, True, False),  # HAProxy serves the port
        ("proxy", 1, True, False, False),
        ("direct", 1, True, False, True),
    ],
)
def test_auto_chooses_direct_ingress_where_it_can_be(
        monkeypatch: pytest.MonkeyPatch, ingress: str, replicas: int, own_ray: bool,
        haproxy: bool, direct: bool) -> None:
    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "1" if haproxy else "0")
    router = RouterConfig(ingress=ingress,  # type: ignore[arg-type]
                          replicas=Replicas(min=1, max=replicas))
    assert direct_ingress(router, own_ray) is direct


def test_direct_ingress_where_it_cannot_be_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "0")
    with pytest.raises(ConfigError, match=r"router\.ingress: direct needs a Ray that raylane"):
        direct_ingress(RouterConfig(ingress="direct"), own_ray=False)
    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "1")
    with pytest.raises(ConfigError, match="RAY_SERVE_ENABLE_HA_PROXY=1 both serve"):
        direct_ingress(RouterConfig(ingress="direct"), own_ray=True)


def test_a_port_in_use_is_named() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"router.port: cannot serve 127.0.0.1:{port}: "
                                              "Address already in use"):
            check_port_free("127.0.0.1", port)
    check_port_free("127.0.0.1", port)

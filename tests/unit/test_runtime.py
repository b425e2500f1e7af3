"""The Ray Serve settings `raylane serve` gives the Ray it starts."""

from __future__ import annotations

import os

import pytest

from raylane.cluster.runtime import HAPROXY_PORTS as PORTS
from raylane.cluster.runtime import THROUGHPUT_ENV, environment, serve_env


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

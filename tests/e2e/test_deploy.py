"""`raylane deploy` against a real Ray cluster with its dashboard, as an operator runs it.

The test starts its own local Ray (dashboard on a free port) in a child process and its
own Redis, deploys a `sim` model through Serve's REST API, asks it through the OpenAI SDK,
then deploys a changed config while requests are queued: every one of them is answered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from openai import OpenAI

from raylane.cluster.redis_server import RedisServer, free_port

pytestmark = pytest.mark.slow

CONFIG = """\
redis: {{url: "{redis}"}}
router: {{host: 127.0.0.1, port: {port}}}
models:
  - name: echo
    queue: {{max_depth: 100, timeout_s: 120}}
    pools:
      - name: sim
        backend: sim
        options: {{tokens_per_s: {rate}}}
        slots: {slots}
        resources: {{CPU: 0.1}}
        drain_s: 1
"""

# A Ray head with its dashboard, held by a child process: closing its stdin ends it, and
# with it every process of that Ray (no `ray stop`, which would stop other Rays here too).
HOLDER = """\
import sys, ray
ctx = ray.init(num_cpus=4, include_dashboard=True, dashboard_host="127.0.0.1",
               dashboard_port=int(sys.argv[1]), logging_level="ERROR")
print("READY", ctx.dashboard_url, flush=True)
sys.stdin.read()
ray.shutdown()
"""


@dataclass
class Head:
    address: str
    process: subprocess.Popen[str]


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[Head]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "REDIS_URL")}
    log = tmp_path / "ray.log"
    with log.open("w") as err:
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(port)], env=env,
                                   text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=err)
    assert process.stdin is not None and process.stdout is not None
    children: list[psutil.Process] = []
    try:
        line = process.stdout.readline()
        assert line.startswith("READY"), log.read_text()[-3000:]
        yield Head(f"http://127.0.0.1:{port}", process)
    finally:
        children = psutil.Process(process.pid).children(recursive=True)
        process.stdin.close()
        try:
            process.wait(60)
        finally:
            process.stdout.close()
            for child in children:  # whatever Ray left behind
                if child.is_running():
                    child.kill()


def deploy(config: Path, head: Head) -> tuple[int, str, float]:
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "raylane.cluster.cli", "deploy", str(config),
                           "--address", head.address, "--timeout", "120"],
                          capture_output=True, text=True, timeout=180)
    return done.returncode, done.stdout + done.stderr, time.monotonic() - began


def ask(client: OpenAI, text: str, tokens: int) -> str:
    reply = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": text}], max_tokens=tokens)
    return reply.choices[0].message.content or ""


def test_deploy_serves_then_updates_without_dropping_queued_jobs(
        ray_head: Head, tmp_path: Path) -> None:
    port = free_port()
    with RedisServer() as redis:
        config = tmp_path / "raylane.yaml"
        config.write_text(CONFIG.format(redis=redis.url, port=port, rate=20, slots=2))
        rc, out, took = deploy(config, ray_head)
        assert rc == 0, out
        assert "application running" in out
        print(f"first deploy: {took:.1f} s")

        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", timeout=120,
                        max_retries=0)
        assert ask(client, "hello from the deploy test", 5) == "hello from the deploy test"

        # 10 jobs of ~1.5 s on 2 slots: most wait in the queue while the pool rolls over.
        with ThreadPoolExecutor(10) as pool:
            answers = [pool.submit(ask, client, f"job {i} " + "word " * 30, 30)
                       for i in range(10)]
            time.sleep(1.0)
            waiting = sum(not answer.done() for answer in answers)
            config.write_text(CONFIG.format(redis=redis.url, port=port, rate=40, slots=4))
            rc, out, took = deploy(config, ray_head)
            assert rc == 0, out
            print(f"update: {took:.1f} s with {waiting} requests waiting")
            texts = [answer.result(timeout=120) for answer in answers]
        assert waiting >= 6  # the update really happened under queued work
        for i, text in enumerate(texts):
            assert text.startswith(f"job {i} word word"), text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/raylane/status") as response:
            pools = json.load(response)["models"][0]["pools"]
        assert [pool["slots"] for pool in pools] == [4]  # the new pool serves

        # A config the cluster can never place is refused with the reason, not waited on.
        config.write_text(CONFIG.format(redis=redis.url, port=port, rate=40, slots=4)
                          .replace("CPU: 0.1", "GPU: 1"))
        rc, out, _ = deploy(config, ray_head)
        assert rc == 1
        assert "DEPLOY_FAILED" in out and "GPU" in out, out
        assert ask(client, "after the update", 3) == "after the update"

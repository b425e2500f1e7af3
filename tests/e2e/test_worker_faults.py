"""Worker replicas killed, paused and crashed under load, and clients that hang up.

A cluster of its own: a `sim` model with two one-slot replicas, short leases,
two attempts per job, and a prompt word that crashes any worker taking it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from raylane.cluster.redis_server import free_port
from tests.e2e.conftest import Running, start_raylane, stop_raylane

CONFIG = """\
router: {{port: {port}}}
models:
  - name: faulty
    queue: {{max_depth: 100, timeout_s: 60, lease_s: 1.5, max_attempts: 2}}
    pools:
      - backend: sim
        options: {{tokens_per_s: 10, ttft_s: 1.0, fail_on: POISON}}
        slots: 1
        resources: {{CPU: 0.1}}
        replicas: {{min: 2, max: 2}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root: Path = tmp_path_factory.mktemp("faults")
    port = free_port()
    (root / "raylane.yaml").write_text(CONFIG.format(port=port))
    process = start_raylane([str(root / "raylane.yaml")], root / "raylane.log")
    try:
        yield Running(f"http://127.0.0.1:{port}", process, root / "raylane.log")
    finally:
        stop_raylane(process)


@pytest.fixture
def client(cluster: Running) -> Iterator[openai.OpenAI]:
    wait_until(cluster, lambda m, ws: len(ws) == 2 and not any(w["busy"] for w in ws)
               and m["queue"]["depth"] == 0 and m["queue"]["running"] == 0, timeout=60)
    with openai.OpenAI(base_url=f"{cluster.url}/v1", api_key="x", max_retries=0) as client:
        yield client


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


def model_status(cluster: Running) -> tuple[dict, list[dict]]:
    model = cluster.status()["models"][0]
    return model, model["pools"][0]["workers"]


def wait_until(cluster: Running, check: Callable[[dict, list[dict]], bool],
               timeout: float = 20) -> float:
    """Poll the status until `check` holds; returns the seconds it took."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if check(*model_status(cluster)):
            return time.monotonic() - began
        time.sleep(0.05)
    raise AssertionError(f"condition not reached: {cluster.status()}")


def busy_worker(cluster: Running) -> int:
    """Pid of the replica running the job."""
    wait_until(cluster, lambda _, ws: any(w["busy"] for w in ws))
    return next(w["pid"] for w in model_status(cluster)[1] if w["busy"])


def ask(client: openai.OpenAI, words: str, tokens: int) -> str:
    reply = client.chat.completions.create(
        model="faulty", messages=[{"role": "user", "content": words}], max_tokens=tokens)
    return reply.choices[0].message.content or ""


def echo(words: str, tokens: int) -> str:
    parts = words.split()
    return " ".join(parts[i % len(parts)] for i in range(tokens))


def test_worker_killed_before_its_first_token_the_client_gets_one_normal_answer(
    client: openai.OpenAI, cluster: Running, pool: ThreadPoolExecutor
) -> None:
    answer: Future[str] = pool.submit(ask, client, "still here", 4)
    os.kill(busy_worker(cluster), signal.SIGKILL)
    assert answer.result(timeout=30) == echo("still here", 4)


def test_worker_killed_mid_answer_non_streaming_is_retried_transparently(
    client: openai.OpenAI, cluster: Running, pool: ThreadPoolExecutor
) -> None:
    answer: Future[str] = pool.submit(ask, client, "try again", 12)
    pid = busy_worker(cluster)
    time.sleep(1.5)  # past its first token
    os.kill(pid, signal.SIGKILL)
    assert answer.result(timeout=30) == echo("try again", 12)


def test_worker_killed_mid_stream_ends_the_stream_with_an_error_event(
    client: openai.OpenAI, cluster: Running
) -> None:
    stream = client.chat.completions.create(
        model="faulty", messages=[{"role": "user", "content": "cut short"}], max_tokens=40,
        stream=True)
    text = ""
    with pytest.raises(openai.APIError) as error:
        for chunk in stream:
            text += chunk.choices[0].delta.content or ""
            if len(text.split()) == 3:
                os.kill(busy_worker(cluster), signal.SIGKILL)
    assert "lost" in str(error.value.message)
    assert echo("cut short", 40).startswith(text)  # no duplicated or out-of-order text
    assert 3 <= len(text.split()) < 40


def test_worker_paused_past_its_lease_is_fenced_off(
    client: openai.OpenAI, cluster: Running, pool: ThreadPoolExecutor
) -> None:
    answer: Future[str] = pool.submit(ask, client, "moved on", 10)
    pid = busy_worker(cluster)
    time.sleep(1.2)
    os.kill(pid, signal.SIGSTOP)
    try:
        result = answer.result(timeout=30)  # the other replica took the job over
    finally:
        os.kill(pid, signal.SIGCONT)
    assert result == echo("moved on", 10)
    # The resumed replica learns it lost the job, drops it and is free again.
    wait_until(cluster, lambda m, ws: len(ws) == 2 and not any(w["busy"] for w in ws))


def test_client_hanging_up_frees_the_slot_within_a_second(
    client: openai.OpenAI, cluster: Running
) -> None:
    body = {"model": "faulty", "messages": [{"role": "user", "content": "bye"}],
            "max_tokens": 200, "stream": True}
    with httpx.stream("POST", f"{cluster.url}/v1/chat/completions", json=body,
                      timeout=30) as response:
        for line in response.iter_lines():
            if '"content":"bye"' in line:
                break
    took = wait_until(cluster, lambda m, _: m["queue"]["running"] == 0, timeout=5)
    assert took < 1.0


def test_non_streaming_client_hanging_up_frees_the_slot(
    client: openai.OpenAI, cluster: Running
) -> None:
    body = {"model": "faulty", "messages": [{"role": "user", "content": "gone"}],
            "max_tokens": 200}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{cluster.url}/v1/chat/completions", json=body, timeout=2.0)
    took = wait_until(cluster, lambda m, _: m["queue"]["running"] == 0, timeout=5)
    assert took < 1.0


def test_queued_request_of_a_client_that_hung_up_is_removed(
    client: openai.OpenAI, cluster: Running, pool: ThreadPoolExecutor
) -> None:
    busy = [pool.submit(ask, client, f"busy{i}", 8) for i in range(2)]
    wait_until(cluster, lambda m, _: m["queue"]["running"] == 2)
    body = {"model": "faulty", "messages": [{"role": "user", "content": "waiting"}],
            "max_tokens": 2}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{cluster.url}/v1/chat/completions", json=body, timeout=0.5)
    took = wait_until(cluster, lambda m, _: m["queue"]["depth"] == 0, timeout=5)
    assert took < 1.0
    assert [f.result(timeout=30) for f in busy] == [echo(f"busy{i}", 8) for i in range(2)]


def test_a_request_that_crashes_every_worker_is_dead_lettered(
    client: openai.OpenAI, cluster: Running
) -> None:
    with pytest.raises(openai.InternalServerError) as error:
        ask(client, "POISON pill", 4)
    assert error.value.body["code"] == "job_lost"
    model, _ = model_status(cluster)
    assert model["queue"]["dead_letters"] == 1
    # Serve replaced the crashed replicas; the model keeps serving.
    wait_until(cluster, lambda _, ws: len(ws) == 2, timeout=60)
    assert ask(client, "after the storm", 3) == echo("after the storm", 3)

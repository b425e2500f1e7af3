"""Request ids, log lines and queue-position comments through Ray Serve's proxy.

A `raylane serve` of one slow `sim` model (one slot, 20 tokens/s): the proxy returns one
`X-Request-ID`, the router and worker replicas log the request under that id (their
JSON lines reach the console of `raylane serve`), and a stream waiting behind busy
requests hears its position while it waits, before any text.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import serving

CONFIG = """\
router: {{port: {port}, queue_position_interval_s: 0.3}}
models:
  - name: sim
    queue: {{timeout_s: 60}}
    pools:
      - backend: sim
        options: {{tokens_per_s: 20}}
        slots: 1
        resources: {{CPU: 0.1}}
"""
CHAT = {"model": "sim", "messages": [{"role": "user", "content": "zebra quartz"}],
        "max_tokens": 3}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("request-ids")
    with serving(root, CONFIG) as url:
        yield url, root / "raylane.log"


def logged(log: Path, request_id: str, timeout_s: float = 30) -> list[dict]:
    """The JSON log lines of `request_id` on the console, once a router and a worker line
    are there (Ray forwards replica output to it in batches)."""
    deadline = time.monotonic() + timeout_s
    while True:
        lines = [json.loads(line[line.index("{"):]) for line in log.read_text().splitlines()
                 if f'"request_id": "{request_id}"' in line]
        loggers = {line["logger"] for line in lines}
        if {"raylane.router", "raylane.worker"} <= loggers or time.monotonic() > deadline:
            return lines
        time.sleep(0.5)


def test_the_proxy_returns_one_id_the_callers_or_a_new_one(served: tuple[str, Path]) -> None:
    url, _ = served
    mine = f"e2e-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=url, timeout=60) as http:
        given = http.post("/v1/chat/completions", json=CHAT, headers={"X-Request-ID": mine})
        made = http.post("/v1/chat/completions", json=CHAT)
        error = http.post("/v1/chat/completions", json={**CHAT, "model": "nope"},
                          headers={"X-Request-ID": mine + "-404"})
    assert given.headers.get_list("x-request-id") == [mine]
    assert given.json()["id"] == f"chatcmpl-{mine}"
    [new] = made.headers.get_list("x-request-id")
    assert made.json()["id"] == f"chatcmpl-{new}"
    assert error.status_code == 404 and error.headers.get_list("x-request-id") == [mine + "-404"]


def test_router_and_worker_log_the_request_under_its_id(served: tuple[str, Path]) -> None:
    url, log = served
    mine = f"e2e-{uuid.uuid4().hex[:8]}"
    answer = httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=60,
                        headers={"X-Request-ID": mine})
    assert answer.status_code == 200 and "zebra" in answer.text
    lines = logged(log, mine)
    said = {(line["logger"], line["msg"]) for line in lines}
    assert {("raylane.router", "request finished"), ("raylane.worker", "job started"),
            ("raylane.worker", "job finished")} <= said, lines
    assert all("zebra" not in json.dumps(line) for line in lines)


def test_a_waiting_stream_hears_its_position_before_its_text(served: tuple[str, Path]) -> None:
    url, _ = served
    busy = {"model": "sim", "prompt": "busy", "max_tokens": 20}  # a second each
    with ThreadPoolExecutor(2) as pool, httpx.Client(base_url=url, timeout=60) as http:
        blockers = [pool.submit(http.post, "/v1/completions", json=busy) for _ in range(2)]
        time.sleep(0.3)
        began = time.monotonic()
        heard: list[tuple[float, str]] = []
        with http.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as s:
            assert s.status_code == 200
            heard += [(time.monotonic() - began, line) for line in s.iter_lines() if line]
        assert all(b.result().status_code == 200 for b in blockers)
    comments = [(t, line) for t, line in heard if line.startswith(": queue position")]
    first_text = next(t for t, line in heard if line.startswith("data: "))
    # comments came while it waited, about every 0.3 s, not all at once with the text
    assert len(comments) >= 3, heard
    assert comments[0][0] < first_text - 0.5
    assert heard[-1][1] == "data: [DONE]"

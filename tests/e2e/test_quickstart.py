"""The README's first command: `raylane serve` with its embedded defaults, then Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import psutil

from raylane.cluster.redis_server import free_port
from tests.e2e.conftest import listener, start_raylane, stop_raylane


def test_embedded_defaults_serve_the_bundled_model_and_stop_cleanly(tmp_path: Path) -> None:
    port = free_port()
    began = time.monotonic()
    process = start_raylane(["--port", str(port)], tmp_path / "raylane.log")
    started = time.monotonic() - began
    tree = psutil.Process(process.pid).children(recursive=True)
    names = " ".join(" ".join(p.cmdline()) for p in tree)
    assert "redis-server" in names and "raylet" in names
    # The router replica serves the port itself (router.ingress auto: direct), no proxy
    # between the client and the router.
    assert "ServeReplica:raylane:Router" in " ".join(listener(port).cmdline())
    # A second raylane on the same port stops at once and says why.
    second = subprocess.run([sys.executable, "-m", "raylane.cluster.cli", "serve", "--port",
                             str(port)], capture_output=True, text=True, timeout=60)
    assert second.returncode == 2
    assert f"router.port: cannot serve 127.0.0.1:{port}: Address already in use" in second.stderr
    try:
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-anything",
                           max_retries=0) as client:
            assert [m.id for m in client.models.list()] == ["smollm2-135m", "smollm2"]
            reply = client.chat.completions.create(
                model="smollm2-135m", messages=[{"role": "user", "content": "Say hello."}],
                max_tokens=16)
            assert reply.choices[0].message.content
            # Ctrl-C while a request is being answered: it still gets its whole answer. The
            # first token has come when the signal is sent, so the answer is certainly in
            # flight; whole means it ends as the model or max_tokens ends it, not cut short.
            stream = client.completions.create(
                model="smollm2-135m", prompt="A long story:", max_tokens=120, temperature=0.7,
                stream=True, stream_options={"include_usage": True})
            chunks = iter(stream)
            first = next(chunks)
            process.send_signal(signal.SIGINT)
            rest = list(chunks)
            finish = [c.choices[0].finish_reason for c in [first, *rest] if c.choices]
            usage = rest[-1].usage
            assert finish[-1] in ("length", "stop") and finish[:-1] == [None] * (len(finish) - 1)
            if finish[-1] == "length":
                assert usage.completion_tokens == 120
            else:
                assert 0 < usage.completion_tokens < 120
    finally:
        assert stop_raylane(process) == 0
    log = (tmp_path / "raylane.log").read_text()
    assert "raylane: stopped" in log
    _, alive = psutil.wait_procs(tree, timeout=15)
    assert alive == [], f"left running: {[p.cmdline() for p in alive]}"
    assert started < 120

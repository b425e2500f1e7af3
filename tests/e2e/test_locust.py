"""The locust users against a real `raylane serve` of a `sim` model: the CI smoke.

Thirty seconds of the default mix (chat, streamed chat, completions, embeddings) with
three priorities, two API keys and `ignore_eos` on the generation requests must end
without a single failure, and the reports
must hold the LLM statistics; a wrong key must fail the run, named by its status.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import serving

LOCUSTFILE = Path(__file__).parents[2] / "loadtest" / "locustfile.py"
ADMIN = "locust-admin-key"
CONFIG = """\
router: {{port: {port}}}
auth: {{enabled: true}}
models:
  - name: sim
    queue: {{max_depth: 1000, timeout_s: 30}}
    pools: [{{backend: sim, options: {{tokens_per_s: 200}}, slots: 32, resources: {{CPU: 0.1}}}}]
"""


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(tmp_path_factory.mktemp("locust"), CONFIG, {"RAYLANE_ADMIN_KEY": ADMIN}) as url:
        yield url


def admin(url: str, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        url + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def locust(url: str, out: Path, seconds: int, *options: str) -> subprocess.CompletedProcess:
    """A headless locust run writing `out`_stats.csv, `out`_failures.csv and `out`.html."""
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
               "--host", url, "-t", f"{seconds}s", "--csv", str(out), "--html", f"{out}.html",
               "--only-summary", "--model", "sim", *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as file:
        return list(csv.DictReader(file))


@pytest.mark.slow
def test_a_30_second_run_of_the_whole_mix_has_no_failure(url: str, tmp_path: Path) -> None:
    keys = [admin(url, "POST", "/admin/keys", {"name": name})["key"] for name in ("a", "b")]
    run = locust(url, tmp_path / "run", 30, "-u", "16", "-r", "16",
                 "--priorities=-1,0,5", "--api-keys", ",".join(keys), "--ignore-eos")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    stats = rows(tmp_path / "run_stats.csv")
    assert all(row["Failure Count"] == "0" for row in stats), stats
    assert rows(tmp_path / "run_failures.csv") == []
    count = {(row["Type"], row["Name"]): int(row["Request Count"]) for row in stats}
    for priority in (-1, 0, 5):
        for kind in ("chat", "chat stream", "completion", "embedding"):
            assert count[("POST", f"{kind} p{priority}")] > 0, count
        for metric in ("ttft", "itl", "tok/s"):
            assert count[(metric, f"chat stream p{priority}")] > 0, count
    ttft = {row["Name"]: float(row["50%"]) for row in stats if row["Type"] == "ttft"}
    stream = {row["Name"]: float(row["50%"]) for row in stats if row["Type"] == "POST"}
    assert all(0 < ttft[name] <= stream[name] for name in ttft), (ttft, stream)
    assert (tmp_path / "run.html").stat().st_size > 0
    for name in ("a", "b"):  # users took the keys in turn
        assert admin(url, "GET", f"/admin/keys/{name}/usage")["requests"] > 0


def test_a_refused_key_fails_the_run_named_by_status(url: str, tmp_path: Path) -> None:
    # locust rewrites its CSV files every second while it runs, and not at the end
    run = locust(url, tmp_path / "bad", 6, "-u", "2", "-r", "2", "--api-keys", "rl-wrong",
                 "--mix", "stream=1,embedding=1")
    assert run.returncode == 1, run.stdout[-4000:] + run.stderr[-4000:]
    failures = {(row["Name"], row["Error"]) for row in rows(tmp_path / "bad_failures.csv")}
    assert failures, run.stderr[-4000:] + (tmp_path / "bad_exceptions.csv").read_text()
    assert failures == {("chat stream", "401 invalid_request_error/invalid_api_key"),
                        ("embedding", "401 invalid_request_error/invalid_api_key")}

"""The soak script's short run: traffic while workers die and Redis restarts."""

from __future__ import annotations

import re
import subprocess
import sys


def test_short_soak_loses_duplicates_and_truncates_nothing() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "loadtest.soak", "--requests", "300", "--kill-every", "3", "5",
         "--redis-restarts", "1", "--replicas", "2"],
        capture_output=True, text=True, timeout=600)
    table = run.stdout[run.stdout.index("| outcome |"):]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for bad in ("lost", "duplicated", "truncated"):
        assert f"| {bad} | 0 |" in table
    kills = re.search(r"(\d+) workers killed, (\d+) Redis restarts", run.stdout)
    assert kills is not None and int(kills[1]) >= 1 and int(kills[2]) == 1
    assert "after the run: 0 queued, 0 running" in run.stdout

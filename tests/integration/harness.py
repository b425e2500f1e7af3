"""Router replicas and sim workers in one event loop over a real redis-server (no Ray).

The `sim` engine stands in for a model: tests built on this harness are about the
queue path, and need workers whose speed they control.
"""

from __future__ import annotations

import time
import uuid

import msgspec

from raylane.cluster.backends import SimOptions
from raylane.cluster.config import Config, ModelConfig, PoolConfig, QueueConfig, pool_name
from raylane.cluster.keys import Keys
from raylane.cluster.messages import ChatPrompt, Delta, Done, Job, Message, SamplingParams
from raylane.cluster.queue import JobQueue
from raylane.cluster.redis_client import connect
from raylane.cluster.redis_server import RedisServer, free_port
from raylane.router.jobs import Restart
from raylane.router.state import RouterState
from raylane.workers.pull import PullLoop
from raylane.workers.sim import SimEngine
from tests.conftest import REDIS_BINARIES

PREFIX = "faults"
MODEL = ModelConfig(name="sim", queue=QueueConfig(lease_s=2.0, max_depth=10_000),
                    pools=[PoolConfig(backend="sim", slots=4)])


class Cluster:
    """Router replicas and workers of one model sharing one redis-server."""

    def __init__(self, server: RedisServer, model: ModelConfig = MODEL) -> None:
        self.server = server
        self.model = model
        self.config = Config(models=[model])
        self.routers: list[RouterState] = []
        self.workers: list[PullLoop] = []

    async def router(self) -> RouterState:
        state = await RouterState.open(self.config, self.server.url, PREFIX)
        self.routers.append(state)
        return state

    def worker(self, tokens_per_s: float = 200.0, slots: int = 4, pool: int = 0) -> PullLoop:
        """A worker of the model's pool number `pool` (with these slots, at this rate)."""
        config = msgspec.structs.replace(self.model.pools[pool], slots=slots)
        name = pool_name(config, pool)
        loop = PullLoop(JobQueue(connect(self.server.url), Keys(PREFIX)),
                        SimEngine(SimOptions(tokens_per_s=tokens_per_s)), self.model, config, name,
                        f"{name}@w{len(self.workers)}")
        loop.start()
        self.workers.append(loop)
        return loop

    def restart_redis(self) -> None:
        """Kill redis-server and start a new, empty one on the same port."""
        assert self.server.process is not None
        self.server.process.kill()
        self.server.stop()
        self.server = RedisServer(binary=self.server.binary, port=self.server.port).start()

    async def close(self) -> None:
        for loop in self.workers:
            await loop.stop(grace_s=0.1)
            await loop.queue.redis.aclose()
        for state in self.routers:
            await state.close()
        self.server.stop()


def job(router: RouterState, words: str, max_tokens: int = 4, timeout: float = 30.0) -> Job:
    now = time.time()
    return Job(id=uuid.uuid4().hex, model="sim", kind="chat",
               prompt=ChatPrompt([Message(role="user", content=words)]),
               params=SamplingParams(max_tokens=max_tokens), created_at=now,
               deadline=now + timeout, reply_to=router.reply_to)


def start_cluster(model: ModelConfig = MODEL, binary: str | None = None) -> Cluster:
    """A cluster on a fresh redis-server (by default the newest version found here)."""
    binary = binary or REDIS_BINARIES[-1][1]
    return Cluster(RedisServer(binary=binary, port=free_port()).start(), model)


async def answer(router: RouterState, j: Job) -> tuple[str, list[object]]:
    events: list[object] = []
    async for _, event in router.runner.run([j], router.config.models[0]):
        if isinstance(event, Restart):
            events.clear()
        events.append(event)
    return "".join(e.text for e in events if isinstance(e, Delta | Done)), events

"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import REDIS_BINARIES
from tests.integration.harness import Cluster, start_cluster


@pytest.fixture(params=[path for _, path in REDIS_BINARIES],
                ids=[version for version, _ in REDIS_BINARIES])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    """A router-and-workers harness on a redis-server of its own, of each version here."""
    c = start_cluster(binary=request.param)
    yield c
    await c.close()

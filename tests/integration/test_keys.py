"""API keys against a real redis-server (no Ray): limits across router replicas, budgets,
usage, and every auth refusal of the HTTP app."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest

from raylane.cluster.apikeys import ApiKey
from raylane.cluster.config import AuthConfig
from raylane.cluster.errors import InsufficientQuota, RateLimited
from raylane.cluster.messages import Done, SamplingParams
from raylane.router.app import build_app
from raylane.router.auth import current_key
from raylane.router.state import RouterState
from tests.integration.harness import PREFIX, Cluster, job, start_cluster

ADMIN = "admin-secret-for-tests"


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = start_cluster()
    yield c
    await c.close()


async def test_a_burst_of_1000_across_replicas_admits_exactly_the_rpm(cluster: Cluster) -> None:
    routers = [await cluster.router() for _ in range(3)]
    store = routers[0].key_store
    await store.create(ApiKey(name="burst", rpm=100))
    key = ApiKey(name="burst", rpm=100)
    refusals: list[int] = []

    async def one(i: int) -> bool:
        limiter = routers[i % len(routers)].runner.limiter
        assert limiter is not None
        try:
            await limiter.admit(key, 1)
        except RateLimited as exc:
            refusals.append(exc.retry_after)
            return False
        return True

    began = time.monotonic()
    admitted = sum(await asyncio.gather(*(one(i) for i in range(1000))))
    took = time.monotonic() - began
    # the bucket refills 100 per minute: one more request per 0.6 s the burst lasted, so a
    # burst that takes under 0.6 s (it takes about 0.3 s on two cores) admits exactly 100
    assert 100 <= admitted <= 100 + int(took / 0.6)
    assert len(refusals) == 1000 - admitted
    # the next request is due within 0.6 s: Retry-After rounds up to 1 s, never past 60
    assert all(1 <= retry <= 1 for retry in refusals)


async def test_tokens_per_minute_charge_the_reserved_max_tokens(cluster: Cluster) -> None:
    router = await cluster.router()
    key = ApiKey(name="tpm", tpm=100)
    assert router.runner.limiter is not None
    await router.runner.limiter.admit(key, 40)
    await router.runner.limiter.admit(key, 40)
    with pytest.raises(RateLimited) as refused:
        await router.runner.limiter.admit(key, 40)
    # 20 tokens are left; 20 more refill in 12 s
    assert refused.value.retry_after == 12


async def _ask(router: RouterState, key: ApiKey, max_tokens: int | None) -> Done:
    request = job(router, "one two three")
    request = msgspec.structs.replace(request, params=SamplingParams(max_tokens=max_tokens))
    token = current_key.set(key)
    try:
        async for _, event in router.runner.run([request], router.config.models[0]):
            if isinstance(event, Done):
                return event
    finally:
        current_key.reset(token)
    raise AssertionError("no Done")


async def test_budget_is_reserved_then_the_unused_part_refunded(cluster: Cluster) -> None:
    router = await cluster.router()
    cluster.worker(tokens_per_s=500)
    key = ApiKey(name="budget", budget=10_000)
    await router.key_store.create(key)
    # no max_tokens on a model with no cap: 4096 reserved, the sim's few words used
    done = await _ask(router, key, max_tokens=None)
    usage = await router.key_store.usage("budget")
    assert 0 < done.completion_tokens < 4096
    assert usage.budget_left == 10_000 - done.completion_tokens
    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (
        1, done.prompt_tokens, done.completion_tokens)
    second = await _ask(router, key, max_tokens=20)
    usage = await router.key_store.usage("budget")
    assert second.completion_tokens == 20
    assert usage.budget_left == 10_000 - done.completion_tokens - second.completion_tokens
    assert usage.requests == 2
    assert usage.completion_tokens == done.completion_tokens + second.completion_tokens


async def test_a_request_the_budget_cannot_cover_is_refused_and_takes_nothing(
    cluster: Cluster,
) -> None:
    router = await cluster.router()
    key = ApiKey(name="poor", budget=30, rpm=10)
    await router.key_store.create(key)
    with pytest.raises(InsufficientQuota):
        await _ask(router, key, max_tokens=50)
    usage = await router.key_store.usage("poor")
    assert usage.budget_left == 30 and usage.requests == 0


async def test_a_client_gone_before_an_answer_gets_its_whole_reservation_back(
    cluster: Cluster,
) -> None:
    router = await cluster.router()  # no worker: the request waits until the client leaves
    key = ApiKey(name="gone", budget=1000)
    await router.key_store.create(key)
    token = current_key.set(key)
    try:
        run = router.runner.run([job(router, "one two three", 200)], router.config.models[0])
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(run), 0.3)
        await run.aclose()
    finally:
        current_key.reset(token)
    usage = await router.key_store.usage("gone")
    assert (usage.requests, usage.completion_tokens, usage.budget_left) == (1, 0, 1000)


@pytest.fixture
async def client(cluster: Cluster, monkeypatch: pytest.MonkeyPatch
                 ) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    monkeypatch.setenv("RAYLANE_ADMIN_KEY", ADMIN)
    cluster.config = msgspec.structs.replace(cluster.config, auth=AuthConfig(enabled=True))
    router = await cluster.router()
    cluster.worker(tokens_per_s=500)
    app = build_app(router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://raylane") as http:
        made = await http.post("/admin/keys", json={"name": "user", "models": ["sim"]},
                               headers={"Authorization": f"Bearer {ADMIN}"})
        assert made.status_code == 200, made.text
        yield http, made.json()["key"]


CHAT = {"model": "sim", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
ROUTES = [
    ("POST", "/v1/chat/completions", CHAT, "openai"),
    ("POST", "/v1/completions", {"model": "sim", "prompt": "hi", "max_tokens": 3}, "openai"),
    ("POST", "/v1/embeddings", {"model": "sim", "input": "hi"}, "openai"),
    ("GET", "/v1/models", None, "openai"),
    ("GET", "/v1/models/sim", None, "openai"),
    ("GET", "/raylane/status", None, "openai"),
    ("GET", "/openapi.json", None, "openai"),
    ("POST", "/v1/messages", {"model": "sim", "max_tokens": 3,
                              "messages": [{"role": "user", "content": "hi"}]}, "anthropic"),
    ("POST", "/api/chat", {"model": "sim", "messages": [{"role": "user", "content": "hi"}]},
     "ollama"),
    ("POST", "/api/generate", {"model": "sim", "prompt": "hi"}, "ollama"),
    ("GET", "/api/tags", None, "ollama"),
    ("GET", "/api/version", None, "ollama"),
    ("GET", "/admin/keys", None, "openai"),
]


def _shaped(body: dict, family: str, kind: str) -> bool:
    if family == "anthropic":
        return body["type"] == "error" and body["error"]["type"] == kind
    if family == "ollama":
        return isinstance(body["error"], str)
    return body["error"]["type"] in ("invalid_request_error", "permission_error")


@pytest.mark.parametrize("credential", ["none", "wrong", "revoked"])
async def test_every_route_refuses_a_missing_wrong_or_revoked_key(
    client: tuple[httpx.AsyncClient, str], credential: str
) -> None:
    http, _ = client
    if credential == "revoked":
        revoked = await http.post("/admin/keys", json={"name": "old"},
                                  headers={"Authorization": f"Bearer {ADMIN}"})
        old = revoked.json()["key"]
        gone = await http.delete("/admin/keys/old", headers={"Authorization": f"Bearer {ADMIN}"})
        assert gone.status_code == 200
    headers = {"none": {}, "wrong": {"Authorization": "Bearer rl-nope"},
               "revoked": {"Authorization": f"Bearer {old if credential == 'revoked' else ''}"}}
    for method, path, body, family in ROUTES:
        answer = await http.request(method, path, json=body, headers=headers[credential])
        expected = 403 if path.startswith("/admin") and credential != "none" else 401
        assert answer.status_code == expected, (path, answer.text)
        kind = "permission_error" if expected == 403 else "authentication_error"
        assert _shaped(answer.json(), family, kind), (path, answer.text)
    assert (await http.get("/health")).status_code == 200


async def test_a_valid_key_works_and_is_limited_to_its_models_and_not_admin(
    client: tuple[httpx.AsyncClient, str],
) -> None:
    http, secret = client
    auth = {"Authorization": f"Bearer {secret}"}
    answer = await http.post("/v1/chat/completions", json=CHAT, headers=auth)
    assert answer.status_code == 200, answer.text
    anthropic = await http.post("/v1/messages", headers={"x-api-key": secret}, json={
        "model": "sim", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]})
    assert anthropic.status_code == 200, anthropic.text
    assert (await http.get("/admin/keys", headers=auth)).status_code == 403
    other = await http.post("/admin/keys", headers={"Authorization": f"Bearer {ADMIN}"},
                            json={"name": "other", "models": ["elsewhere"]})
    refused = await http.post("/v1/chat/completions", json=CHAT,
                              headers={"Authorization": f"Bearer {other.json()['key']}"})
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "model_not_found"
    other_auth = {"Authorization": f"Bearer {other.json()['key']}"}
    assert (await http.get("/v1/models", headers=other_auth)).json()["data"] == []
    assert (await http.get("/v1/models/sim", headers=other_auth)).status_code == 404
    assert [m["id"] for m in (await http.get("/v1/models", headers=auth)).json()["data"]] == [
        "sim"]
    usage = await http.get("/admin/keys/user/usage",
                           headers={"Authorization": f"Bearer {ADMIN}"})
    assert usage.json()["requests"] == 2


async def test_over_the_rate_limit_is_429_with_retry_after(
    client: tuple[httpx.AsyncClient, str],
) -> None:
    http, _ = client
    made = await http.post("/admin/keys", headers={"Authorization": f"Bearer {ADMIN}"},
                           json={"name": "slow", "rpm": 2})
    auth = {"Authorization": f"Bearer {made.json()['key']}"}
    codes = [(await http.post("/v1/chat/completions", json=CHAT, headers=auth))
             for _ in range(3)]
    assert [c.status_code for c in codes] == [200, 200, 429]
    assert codes[2].json()["error"]["code"] == "rate_limit_exceeded"
    assert codes[2].headers["Retry-After"] == "30"


async def test_the_cli_creates_lists_shows_usage_and_revokes(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    from raylane.cluster.cli import main

    url = cluster.server.url
    base = ["--redis-url", url, "--prefix", PREFIX]
    router = await cluster.router()

    def run(*args: str) -> tuple[int, str]:
        code = main(["keys", *args, *base])
        return code, capsys.readouterr().out

    code, secret = await asyncio.to_thread(run, "create", "--name", "cli", "--rpm", "5",
                                           "--budget", "100", "--models", "sim,x")
    assert code == 0 and secret.strip().startswith("rl-")
    found = await router.key_store.lookup(secret.strip())
    assert found is not None and found.models == ["sim", "x"] and found.rpm == 5
    code, listed = await asyncio.to_thread(run, "list")
    assert '"cli"' in listed and secret.strip() not in listed
    code, usage = await asyncio.to_thread(run, "usage", "cli")
    assert '"budget_left": 100' in usage
    code, _ = await asyncio.to_thread(run, "revoke", "cli")
    assert code == 0 and await router.key_store.lookup(secret.strip()) is None
    assert (await asyncio.to_thread(run, "revoke", "cli"))[0] == 1

"""API keys on a real `raylane serve` of its own: every route refuses a missing or revoked
key in its API's shape, admin routes need the admin key, and the OpenAI SDK works with a
created key."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tests.e2e.conftest import serving

ADMIN = "e2e-admin-key"
CONFIG = """\
router: {{port: {port}}}
auth: {{enabled: true}}
models:
  - name: sim
    pools: [{{backend: sim, options: {{tokens_per_s: 500}}, resources: {{CPU: 0.1}}}}]
  - name: other
    pools: [{{backend: sim, resources: {{CPU: 0.1}}}}]
  - name: fair
    queue: {{max_depth: 64}}
    pools: [{{backend: sim, options: {{tokens_per_s: 20}}, slots: 1, resources: {{CPU: 0.1}}}}]
"""
CHAT = {"model": "sim", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
ROUTES = [
    ("POST", "/v1/chat/completions", CHAT),
    ("POST", "/v1/completions", {"model": "sim", "prompt": "hi"}),
    ("POST", "/v1/embeddings", {"model": "sim", "input": "hi"}),
    ("GET", "/v1/models", None),
    ("GET", "/v1/models/sim", None),
    ("GET", "/raylane/status", None),
    ("GET", "/metrics", None),
    ("GET", "/openapi.json", None),
    ("POST", "/v1/messages", {**CHAT, "max_tokens": 3}),
    ("POST", "/api/chat", CHAT),
    ("POST", "/api/generate", {"model": "sim", "prompt": "hi"}),
    ("POST", "/api/embed", {"model": "sim", "input": "hi"}),
    ("GET", "/api/tags", None),
    ("GET", "/api/ps", None),
    ("POST", "/api/show", {"model": "sim"}),
    ("GET", "/api/version", None),
    ("GET", "/admin/keys", None),
]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("auth")
    with serving(root, CONFIG, {"RAYLANE_ADMIN_KEY": ADMIN}) as url:
        yield url
    log = (root / "raylane.log").read_text()
    # keys never reach the log
    assert ADMIN not in log and not re.search(r"rl-[A-Za-z0-9_-]{43}", log)


def call(url: str, method: str, path: str, body: object = None,
         key: str | None = None, header: str = "Authorization") -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers[header] = f"Bearer {key}" if header == "Authorization" else key
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def create(url: str, **spec: object) -> str:
    status, made = call(url, "POST", "/admin/keys", spec, key=ADMIN)
    assert status == 200, made
    return made["key"]


def assert_shape(path: str, body: dict, kind: str) -> None:
    if path.startswith("/api/"):
        assert isinstance(body["error"], str)
    elif path == "/v1/messages":
        assert body["type"] == "error" and body["error"]["type"] == kind
    else:
        assert {"message", "type", "param", "code"} <= body["error"].keys()


def test_every_route_refuses_a_missing_or_revoked_key(url: str) -> None:
    revoked = create(url, name="revoked")
    assert call(url, "DELETE", "/admin/keys/revoked", key=ADMIN)[0] == 200
    for key in (None, revoked):
        for method, path, body in ROUTES:
            status, answer = call(url, method, path, body, key=key)
            expected = 403 if path.startswith("/admin") and key else 401
            assert status == expected, (path, answer)
            kind = "permission_error" if expected == 403 else "authentication_error"
            assert_shape(path, answer, kind)
    assert call(url, "GET", "/health")[0] == 200


def test_a_created_key_works_with_the_sdk_within_its_models_and_not_on_admin(url: str) -> None:
    key = create(url, name="user", models=["sim"])
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(model="sim", max_tokens=4,
                                           messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="other", max_tokens=4,
                                       messages=[{"role": "user", "content": "hi"}])
    status, _ = call(url, "POST", "/v1/messages", {**CHAT}, key=key, header="x-api-key")
    assert status == 200
    assert call(url, "GET", "/admin/keys", key=key)[0] == 403
    status, usage = call(url, "GET", "/admin/keys/user/usage", key=ADMIN)
    assert status == 200 and usage["requests"] == 2 and usage["completion_tokens"] > 0


def test_a_wrong_key_is_401_for_the_sdk(url: str) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="rl-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_model_lists_of_every_api_show_only_a_keys_models(url: str) -> None:
    key = create(url, name="lists", models=["sim"])
    _, openai_list = call(url, "GET", "/v1/models", key=key)
    _, tags = call(url, "GET", "/api/tags", key=key)
    _, running = call(url, "GET", "/api/ps", key=key)
    assert [m["id"] for m in openai_list["data"]] == ["sim"]
    assert [m["name"] for m in tags["models"]] == ["sim"]
    assert [m["name"] for m in running["models"]] == ["sim"]
    assert call(url, "POST", "/api/show", {"model": "sim"}, key=key)[0] == 200
    status, refused = call(url, "POST", "/api/show", {"model": "other"}, key=key)
    assert status == 404 and "other" in refused["error"]
    _, everything = call(url, "GET", "/api/tags", key=create(url, name="all"))
    assert {m["name"] for m in everything["models"]} == {"sim", "other", "fair"}


def test_a_heavy_key_cannot_starve_another_keys_requests(url: str) -> None:
    """One slot, 0.5 s a request: a key that queued eight requests takes turns with a key
    that arrives later with two, instead of making it wait for the whole backlog."""
    heavy, light = (create(url, name=name, models=["fair"]) for name in ("heavy", "light"))
    finished: list[str] = []

    def ask(key: str, name: str) -> None:
        with openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0) as client:
            client.chat.completions.create(model="fair", max_tokens=10,
                                           messages=[{"role": "user", "content": name}])
        finished.append(name)

    with ThreadPoolExecutor(10) as pool:
        heavies = [pool.submit(ask, heavy, f"heavy{i}") for i in range(8)]
        time.sleep(0.5)  # all eight queued, the first one running
        done = len(finished)
        lights = [pool.submit(ask, light, f"light{i}") for i in range(2)]
        for future in (*heavies, *lights):
            future.result(timeout=60)
    # FIFO would finish the light key's requests last (places 9 and 10); taking turns, each
    # waits for about one heavy request: the one running, then one more before each.
    first, second = sorted(finished.index(f"light{i}") for i in range(2))
    assert done <= 2, finished
    assert first <= done + 3 and second <= done + 5, finished

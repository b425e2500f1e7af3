"""API keys: their form, their stored digest, what a record allows, who presents one."""

from __future__ import annotations

import hashlib

import msgspec

from raylane.cluster.apikeys import ApiKey, digest, new_secret
from raylane.router.auth import current_key, key_priority, presented_key


def test_a_key_is_rl_and_32_random_bytes_and_never_repeats() -> None:
    keys = {new_secret() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert key.startswith("rl-") and len(key) == 3 + 43


def test_the_stored_digest_is_the_sha256_of_the_key_and_not_the_key() -> None:
    key = new_secret()
    assert digest(key) == hashlib.sha256(key.encode()).hexdigest()
    assert key not in digest(key)


def test_a_record_round_trips_and_carries_no_secret() -> None:
    record = ApiKey(name="a", models=["m"], rpm=10, tpm=100, budget=5, max_priority=2)
    encoded = msgspec.json.encode(record)
    assert msgspec.json.decode(encoded, type=ApiKey) == record
    assert b"rl-" not in encoded


def test_models_empty_means_all_and_aliases_count() -> None:
    assert ApiKey(name="a").allows(["anything"])
    assert ApiKey(name="a", models=["gpt-4o-mini"]).allows(["smollm2", "gpt-4o-mini"])
    assert not ApiKey(name="a", models=["other"]).allows(["smollm2"])


def test_priority_takes_the_key_default_and_is_clamped_to_its_most_urgent() -> None:
    assert key_priority(None, 5) == 5
    token = current_key.set(ApiKey(name="a", default_priority=3, max_priority=1))
    try:
        assert key_priority(None, 5) == 3
        assert key_priority(0, 5) == 1  # more urgent than allowed: clamped
        assert key_priority(7, 5) == 7
    finally:
        current_key.reset(token)


def test_the_key_comes_from_a_bearer_token_or_x_api_key() -> None:
    assert presented_key({b"authorization": b"Bearer rl-x"}) == "rl-x"
    assert presented_key({b"authorization": b"bearer  rl-x "}) == "rl-x"
    assert presented_key({b"x-api-key": b"rl-y"}) == "rl-y"
    assert presented_key({b"authorization": b"Basic abc"}) is None
    assert presented_key({}) is None

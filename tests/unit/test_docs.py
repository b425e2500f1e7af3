"""The configuration reference documents every key the schema accepts."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from raylane.cluster.backends import BACKENDS
from raylane.cluster.config import Config, ModelConfig, PoolConfig

DOC = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()


def keys(struct: type, prefix: str) -> list[str]:
    out = []
    for field in msgspec.structs.fields(struct):
        name = f"{prefix}{field.name}"
        inner = field.type
        if isinstance(inner, type) and issubclass(inner, msgspec.Struct):
            out += keys(inner, f"{name}.")
        else:
            out.append(name)
    return out


def documented() -> list[str]:
    found = keys(Config, "")
    found = [k for k in found if not k.startswith("models")]
    found += [k for k in keys(ModelConfig, "models[].") if k != "models[].pools"]
    found += ["models[].pools", *keys(PoolConfig, "pools[].")]
    for options in BACKENDS.values():
        found += keys(options, "")
    return found


@pytest.mark.parametrize("key", documented())
def test_every_config_key_is_in_the_reference(key: str) -> None:
    assert f"`{key}`" in DOC

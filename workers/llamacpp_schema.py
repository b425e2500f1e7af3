"""What of a JSON Schema llama-cpp-python's grammar converter would not enforce.

`LlamaGrammar.from_json_schema` turns a schema into a GBNF grammar by looking at each
(sub)schema's keywords in a fixed order and taking the first form it knows: `$ref`,
then `oneOf` / `anyOf`, a list of types, `const`, `enum`, an object's `properties`,
`allOf`, an array's `items`, a string's `pattern`, its `format` (uuid, date, time,
date-time), its `minLength` / `maxLength`, and plain types. Any other keyword, and any
keyword beside the one that decided the form, is skipped without a word: a `maximum`,
a `format: email`, a `maxLength` next to a `pattern`. An answer could then break the
schema it was promised to match. `skipped` finds the first such keyword, so the worker
can refuse the schema instead.
"""

from __future__ import annotations

from typing import Any

ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$schema", "$id",
                         "$comment", "deprecated", "readOnly", "writeOnly", "$defs",
                         "definitions"})
"""Keywords that constrain nothing, or that only hold schemas reached through `$ref`."""
FORMATS = frozenset({"date", "time", "date-time"})


def skipped(schema: Any, path: str = "") -> str | None:
    """The path (`properties.age.maximum`) of the first keyword of `schema` the converter
    would not enforce; None when it enforces all of them."""
    if not isinstance(schema, dict):
        return None
    for defs in ("$defs", "definitions"):
        for name, sub in (schema.get(defs) or {}).items():
            if found := skipped(sub, f"{path}{defs}.{name}."):
                return found
    used, subs = _form(schema)
    keys = set(schema) - ANNOTATIONS
    if schema.get("additionalProperties") is True:
        keys.discard("additionalProperties")  # the default: constrains nothing
    if extra := sorted(keys - used):
        return f"{path}{extra[0]}"
    for where, sub in subs:
        if found := skipped(sub, f"{path}{where}."):
            return found
    return None


Form = tuple[set[str], list[tuple[str, Any]]]
"""The keywords the converter reads for a schema, and the subschemas it visits."""


def _form(schema: dict[str, Any]) -> Form:
    if "$ref" in schema:
        return {"$ref"}, []
    if "oneOf" in schema or "anyOf" in schema:
        union = "oneOf" if schema.get("oneOf") else "anyOf"
        return {union}, [(f"{union}[{i}]", s) for i, s in enumerate(schema[union])]
    if isinstance(schema.get("type"), list):
        return {"type"}, []
    if "const" in schema:
        return {"const", "type"}, []
    if "enum" in schema:
        return {"enum", "type"}, []
    return _object_form(schema) or _array_form(schema) or _scalar_form(schema)


def _object_form(schema: dict[str, Any]) -> Form | None:
    if schema.get("type") not in (None, "object"):
        return None
    if "properties" in schema or schema.get("additionalProperties", True) is not True:
        subs = [(f"properties.{k}", s) for k, s in (schema.get("properties") or {}).items()]
        if isinstance(schema.get("additionalProperties"), dict):
            subs.append(("additionalProperties", schema["additionalProperties"]))
        return {"type", "properties", "required", "additionalProperties"}, subs
    if "allOf" in schema:
        return {"type", "allOf"}, [(f"allOf[{i}]", _part(s)) for i, s in
                                   enumerate(schema["allOf"])]
    return None


def _array_form(schema: dict[str, Any]) -> Form | None:
    if schema.get("type") not in (None, "array") or not (
            "items" in schema or "prefixItems" in schema):
        return None
    key = "items" if schema.get("items") else "prefixItems"
    items = schema[key]
    if isinstance(items, list):  # a tuple: its length is fixed
        return {"type", key}, [(f"{key}[{i}]", s) for i, s in enumerate(items)]
    return {"type", key, "minItems", "maxItems"}, [(key, items)]


def _scalar_form(schema: dict[str, Any]) -> Form:
    kind = schema.get("type")
    form = schema.get("format") or ""
    if kind in (None, "string") and "pattern" in schema:
        return {"type", "pattern"}, []
    if kind in (None, "string") and (form in FORMATS or form.startswith("uuid")):
        return {"type", "format"}, []
    if kind == "string" and ("minLength" in schema or "maxLength" in schema):
        return {"type", "minLength", "maxLength"}, []
    return {"type"}, []


def _part(schema: Any) -> Any:
    """An `allOf` member as the converter reads it: a `$ref`, or `properties` and
    `required` merged into the whole."""
    if not isinstance(schema, dict) or "$ref" in schema:
        return schema
    return {"type": "object", **schema} if "properties" in schema else schema

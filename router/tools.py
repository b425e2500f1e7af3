"""What a chat request's `tools` and `tool_choice` come to: a `ToolPlan`.

- `none` (or no tools): the model is not shown the tools and answers text.
- `auto` (the default with tools): the tools go to the model's chat template and the
  answer is read for calls in the Hermes form (`tool_calls.py`); a template that does
  not take tools is refused by the worker (see `raylane.workers.templates`).
- `required` or a named function: decoding is constrained to the call's JSON (the JSON
  schema machinery of `response_format`): a named function's arguments, or for
  `required` an array of `{"name", "arguments"}` objects (one only, with
  `parallel_tool_calls: false`), which the router turns into `tool_calls`.

Every tool's `parameters` is checked as a JSON Schema on arrival.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import jsonschema
import msgspec

from raylane.cluster.errors import InvalidRequest
from raylane.router.protocol import ChatCompletionRequest, NamedToolChoice, TextFormat, Tool


@dataclass(frozen=True)
class ToolPlan:
    mode: Literal["none", "auto", "required", "named"] = "none"
    names: tuple[str, ...] = ()
    """The functions offered, for reading calls out of the answer."""
    function: str | None = None
    """The named function (mode `named`)."""
    tools: str | None = None
    """The tool list for the chat template (JSON text); None in mode `none`."""
    schema: str | None = None
    """The JSON Schema the answer is constrained to (modes `required` and `named`)."""


NO_TOOLS = ToolPlan()


def tool_plan(req: ChatCompletionRequest) -> ToolPlan:
    """The plan of a request's tools, or InvalidRequest naming what is wrong."""
    choice = req.tool_choice
    if not req.tools:
        if choice not in (None, "none"):
            raise InvalidRequest("tool_choice needs tools: the request has none.",
                                 param="tool_choice")
        return NO_TOOLS
    schemas = _parameters(req.tools)
    if choice == "none":
        return NO_TOOLS
    if choice in (None, "auto"):
        return _auto(schemas, req.tools)
    names = tuple(schemas)
    tools = _listed(req.tools)
    if req.response_format is not None and not isinstance(req.response_format, TextFormat):
        raise InvalidRequest("A forced tool call is JSON already: tool_choice "
                             f"{_choice_text(choice)} cannot be combined with a JSON "
                             "response_format.", param="response_format")
    if isinstance(choice, NamedToolChoice):
        name = choice.function.name
        if name not in schemas:
            raise InvalidRequest(f"tool_choice names the function '{name}', which is not "
                                 f"among the tools ({', '.join(names)}).",
                                 param="tool_choice.function.name")
        return ToolPlan("named", names, name, tools, json.dumps(schemas[name]))
    calls = [{"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
              "properties": {"name": {"const": n}, "arguments": s}} for n, s in schemas.items()]
    array: dict[str, Any] = {"type": "array", "minItems": 1,
                             "items": calls[0] if len(calls) == 1 else {"anyOf": calls}}
    if req.parallel_tool_calls is False:
        array["maxItems"] = 1
    return ToolPlan("required", names, None, tools, json.dumps(array))


def auto_plan(tools: list[Tool]) -> ToolPlan:
    """Tools the model may call or not (`auto`; what Ollama's `tools` always are)."""
    return _auto(_parameters(tools), tools) if tools else NO_TOOLS


def _auto(schemas: dict[str, dict[str, Any]], tools: list[Tool]) -> ToolPlan:
    return ToolPlan("auto", tuple(schemas), tools=_listed(tools))


def _listed(tools: list[Tool]) -> str:
    """The tool list for the chat template."""
    return json.dumps([msgspec.to_builtins(t) for t in tools])


def _parameters(tools: list[Tool]) -> dict[str, dict[str, Any]]:
    """Each function's arguments schema by name, checked; an object schema when absent."""
    schemas: dict[str, dict[str, Any]] = {}
    for i, tool in enumerate(tools):
        function = tool.function
        if function.name in schemas:
            raise InvalidRequest(f"Two tools are named '{function.name}'.",
                                 param=f"tools[{i}].function.name")
        schema = function.parameters or {"type": "object", "properties": {}}
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise InvalidRequest(f"The parameters of '{function.name}' are not a valid JSON "
                                 f"Schema: {exc.message}",
                                 param=f"tools[{i}].function.parameters") from None
        schemas[function.name] = {"type": "object", **schema} if "type" not in schema else schema
    return schemas


def _choice_text(choice: object) -> str:
    return f"'{choice.function.name}'" if isinstance(choice, NamedToolChoice) else f'"{choice}"'

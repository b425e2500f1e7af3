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


@dataclass(frozen=True)
class Fields:
    """Where an API keeps what a plan reads, for errors that name the request's own field."""

    name: str = "function.name"
    parameters: str = "function.parameters"
    choice_name: str = "tool_choice.function.name"


OPENAI_FIELDS = Fields()


def tool_plan(req: ChatCompletionRequest) -> ToolPlan:
    """The plan of a request's tools, or InvalidRequest naming what is wrong."""
    forced = req.tools and req.tool_choice not in (None, "auto", "none")
    if forced and req.response_format is not None and not isinstance(req.response_format,
                                                                      TextFormat):
        raise InvalidRequest("A forced tool call is JSON already: tool_choice "
                             f"{_choice_text(req.tool_choice)} cannot be combined with a JSON "
                             "response_format.", param="response_format")
    parallel = req.parallel_tool_calls is not False
    if isinstance(req.tool_choice, NamedToolChoice):
        return plan(req.tools or [], "named", req.tool_choice.function.name, parallel)
    return plan(req.tools or [], req.tool_choice, None, parallel)


def plan(tools: list[Tool], choice: str | None, named: str | None = None,
         parallel: bool = True, fields: Fields = OPENAI_FIELDS) -> ToolPlan:
    """The plan of `tools` under `choice` (`none`, `auto`, `required`, `named` with the
    function `named`; None for the default), in OpenAI's terms whatever the API."""
    if not tools:
        if choice not in (None, "none"):
            raise InvalidRequest("tool_choice needs tools: the request has none.",
                                 param="tool_choice")
        return NO_TOOLS
    schemas = _parameters(tools, fields)
    if choice == "none":
        return NO_TOOLS
    if choice in (None, "auto"):
        return _auto(schemas, tools)
    names = tuple(schemas)
    listed = _listed(tools)
    if named is not None:
        if named not in schemas:
            raise InvalidRequest(f"tool_choice names the function '{named}', which is not "
                                 f"among the tools ({', '.join(names)}).",
                                 param=fields.choice_name)
        return ToolPlan("named", names, named, listed, json.dumps(schemas[named]))
    calls = [{"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
              "properties": {"name": {"const": n}, "arguments": s}} for n, s in schemas.items()]
    array: dict[str, Any] = {"type": "array", "minItems": 1,
                             "items": calls[0] if len(calls) == 1 else {"anyOf": calls}}
    if not parallel:
        array["maxItems"] = 1
    return ToolPlan("required", names, None, listed, json.dumps(array))


def auto_plan(tools: list[Tool], fields: Fields = OPENAI_FIELDS) -> ToolPlan:
    """Tools the model may call or not (`auto`; what Ollama's `tools` always are)."""
    return _auto(_parameters(tools, fields), tools) if tools else NO_TOOLS


def _auto(schemas: dict[str, dict[str, Any]], tools: list[Tool]) -> ToolPlan:
    return ToolPlan("auto", tuple(schemas), tools=_listed(tools))


def _listed(tools: list[Tool]) -> str:
    """The tool list for the chat template."""
    return json.dumps([msgspec.to_builtins(t) for t in tools])


def _parameters(tools: list[Tool], fields: Fields) -> dict[str, dict[str, Any]]:
    """Each function's arguments schema by name, checked; an object schema when absent."""
    schemas: dict[str, dict[str, Any]] = {}
    for i, tool in enumerate(tools):
        function = tool.function
        if function.name in schemas:
            raise InvalidRequest(f"Two tools are named '{function.name}'.",
                                 param=f"tools[{i}].{fields.name}")
        schema = function.parameters or {"type": "object", "properties": {}}
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise InvalidRequest(f"The parameters of '{function.name}' are not a valid JSON "
                                 f"Schema: {exc.message}",
                                 param=f"tools[{i}].{fields.parameters}") from None
        schemas[function.name] = {"type": "object", **schema} if "type" not in schema else schema
    return schemas


def _choice_text(choice: object) -> str:
    return f"'{choice.function.name}'" if isinstance(choice, NamedToolChoice) else f'"{choice}"'

"""The grammar llama.cpp samples a constrained answer under: a JSON answer (a response
format, or a forced tool call), a choice of strings, or a GBNF grammar as given.
"""

from __future__ import annotations

import json
from typing import Any

from raylane.cluster.errors import InvalidRequest
from raylane.cluster.messages import ChatPrompt, Prompt, SamplingParams
from raylane.workers.llamacpp_schema import skipped


def grammar(llm: Any, params: SamplingParams, prompt: Prompt) -> Any:
    """The grammar of a constrained answer: a JSON answer (a response format, or a forced
    tool call) by llama.cpp's JSON grammar (its root is an object) or one converted from the
    schema; a choice as the alternation of its strings; a GBNF grammar as given. None for
    plain text. A regex has no grammar here."""
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    if params.regex is not None:
        raise InvalidRequest("llama.cpp cannot follow a regex: give a grammar "
                             "(structured_outputs.grammar, in GBNF) or a choice instead.",
                             param="structured_outputs.regex")
    if params.choice:
        alternatives = " | ".join(json.dumps(choice) for choice in params.choice)
        return _parsed(llm, f"root ::= {alternatives}", "structured_outputs.choice")
    if params.grammar is not None:
        return _parsed(llm, params.grammar, "structured_outputs.grammar")

    if params.json_schema is not None:
        tools = isinstance(prompt, ChatPrompt) and prompt.tools_forced
        what = "the parameters of these tools" if tools else "this JSON schema"
        param = "tools" if tools else "response_format.json_schema.schema"
        if (keyword := skipped(json.loads(params.json_schema))) is not None:
            raise InvalidRequest(f"llama.cpp cannot follow {what}: its grammar would not "
                                 f"enforce `{keyword}`.", param=param)
        try:
            return LlamaGrammar.from_json_schema(params.json_schema, verbose=False)
        except Exception as exc:  # a schema feature the converter lacks: the request's fault
            raise InvalidRequest(f"llama.cpp cannot follow {what}: {exc}", param=param) from exc
    if params.json_object:
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    return None


def _parsed(llm: Any, gbnf: str, param: str) -> Any:
    """A GBNF grammar that llama.cpp parses (it prints why when it does not), or
    InvalidRequest naming `param`: a grammar it cannot parse would fail in the sampler."""
    import llama_cpp
    from llama_cpp.llama_grammar import LlamaGrammar

    sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, gbnf.encode(), b"root")
    if not sampler:
        raise InvalidRequest("llama.cpp cannot parse this grammar (GBNF, from a `root` rule).",
                             param=param)
    llama_cpp.llama_sampler_free(sampler)
    return LlamaGrammar.from_string(gbnf, verbose=False)

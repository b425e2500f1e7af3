"""The `llama.cpp` engine: GGUF models on CPU through llama-cpp-python.

One `Llama` instance per slot: a llama.cpp context holds one sequence's KV cache
and is not safe to use from two threads, while the weights are memory-mapped
and shared by all instances, so N slots cost N KV caches, not N models.

Generation runs in a thread per slot and hands tokens to the event loop with
`call_soon_threadsafe`; the loop never waits on llama.cpp. Prompts of chat
requests are rendered with the model's own chat template (from the GGUF
metadata, or `options.chat_template`), tools included (`templates.py`).
Log probabilities, when asked for, come from the logits each token was sampled
from, read before the next token is decoded: no `logits_all`. An echoed prompt's come
from one pass over the prompt with the logits of every position kept for that pass
only; generation then goes on from the context it leaves.
"""

from __future__ import annotations

import asyncio
import codecs
import random
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from raylane.cluster.backends import LlamaCppOptions
from raylane.cluster.errors import EngineError, InvalidRequest
from raylane.cluster.messages import (
    ChatPrompt,
    Delta,
    Done,
    Embeddings,
    Prompt,
    SamplingParams,
    TextPrompt,
    TokenizeInputs,
    TokenLogprob,
    TokenPrompt,
    Tokens,
)
from raylane.workers.llamacpp_echo import echo_text, prompt_logprobs
from raylane.workers.llamacpp_embed import LlamaEmbedder
from raylane.workers.llamacpp_grammar import grammar
from raylane.workers.llamacpp_logits import processors
from raylane.workers.logprobs import Pending, from_logits
from raylane.workers.prompts import check_bias, completion_budget, token_ids
from raylane.workers.stops import StopMatcher
from raylane.workers.templates import template_inputs


@dataclass
class _Run:
    """One generation: what the thread needs, and how it reports back."""

    tokens: list[int]
    params: SamplingParams
    budget: int
    cancel: threading.Event
    report: Callable[[tuple[str, Any]], None]
    grammar: Any = None
    """A `LlamaGrammar` that constrains sampling (a JSON response format), or None."""
    eog: list[int] = field(default_factory=list)
    """The model's end-of-generation tokens, held back under `min_tokens` or `ignore_eos`."""
    echo: str | None = None
    """The prompt's text, sent before the answer (`SamplingParams.echo`); None: not sent."""


class LlamaCppEngine:
    def __init__(self, weights: Path, options: LlamaCppOptions, slots: int) -> None:
        self.weights = weights
        self.options = options
        self.slots = slots
        self.context_length = options.n_ctx
        self._free: asyncio.Queue[Any] = asyncio.Queue()
        self._threads = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="llama")
        self._cancels: dict[str, threading.Event] = {}
        self._templates: dict[bool, Any] = {}
        """The chat formatter, by whether it opens the assistant's turn."""
        self._template_source: str | None = None
        self._instances: list[Any] = []
        self._eog: list[int] = []
        self._embedder = LlamaEmbedder(weights, options)
        self._started = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._instances = [await loop.run_in_executor(self._threads, self._load)
                           for _ in range(self.slots)]
        self._template_source = (self.options.chat_template
                                 or self._instances[0].metadata.get("tokenizer.chat_template"))
        self._templates = {opened: _chat_formatter(self._instances[0], self._template_source,
                                                   opened) for opened in (True, False)}
        self._eog = _eog_tokens(self._instances[0])
        for llm in self._instances:
            self._free.put_nowait(llm)
        self._started = True

    def _load(self) -> Any:
        from llama_cpp import Llama

        return Llama(
            model_path=str(self.weights),
            n_ctx=self.options.n_ctx,
            n_threads=self.options.n_threads,
            n_batch=self.options.n_batch,
            n_gpu_layers=self.options.n_gpu_layers,
            verbose=False,
        )

    async def generate(
        self, request_id: str, prompt: Prompt, params: SamplingParams
    ) -> AsyncIterator[Delta | Done]:
        llm = await self._free.get()
        cancel = threading.Event()
        self._cancels[request_id] = cancel
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        future = None
        try:
            tokens = self._tokenize(llm, prompt)
            check_bias(params, llm.n_vocab())
            budget = completion_budget(len(tokens), params.max_tokens, self.context_length,
                                       params.limit)

            def report(item: tuple[str, Any]) -> None:
                loop.call_soon_threadsafe(out.put_nowait, item)

            echo = echo_text(llm, prompt, tokens) if params.echo else None
            run = _Run(tokens, params, budget, cancel, report, grammar(llm, params, prompt),
                       self._eog, echo)
            future = loop.run_in_executor(self._threads, _generate, llm, run)
            async for item in _relay(out, run, len(tokens), params):
                yield item
        finally:
            cancel.set()
            self._cancels.pop(request_id, None)
            if future is None:
                self._free.put_nowait(llm)
            else:
                # The instance goes back once its thread is done with it, even when this
                # task is cancelled again while it waits here (a lost lease cancels the
                # job's task, and its stop may cancel it once more): returning it after
                # the await would leak it, and every later job would wait for it forever.
                future.add_done_callback(lambda _: self._free.put_nowait(llm))
                await asyncio.shield(future)

    def _tokenize(self, llm: Any, prompt: Prompt, opened: bool = True,
                  special: bool = True) -> list[int]:
        """The prompt's token ids: a chat rendered by the template (`opened`: with the
        assistant's turn begun), a text with a BOS (`special`)."""
        if isinstance(prompt, ChatPrompt):
            template = self._templates.get(opened)
            if template is None:
                raise InvalidRequest("This model has no chat template; use /v1/completions.")
            messages, tools = template_inputs(prompt, self._template_source)
            try:
                rendered = template(messages=messages, tools=tools)
            except Exception as exc:  # a template's raise_exception(): the request's fault
                raise InvalidRequest(f"The chat template rejected the messages: {exc}",
                                     param="messages") from exc
            return list(llm.tokenize(rendered.prompt.encode(), add_bos=not rendered.added_special,
                                     special=True))
        if isinstance(prompt, TextPrompt):
            if not prompt.text:
                return [llm.token_bos()] if special else []
            return list(llm.tokenize(prompt.text.encode(), add_bos=special, special=True))
        return token_ids(prompt, llm.n_vocab())

    async def tokenize(self, work: TokenizeInputs) -> Tokens:
        # The vocabulary is read-only: any instance tokenizes, even while it generates.
        llm = self._instances[0]
        tokens = await asyncio.to_thread(self._tokenize, llm, work.prompt,
                                         work.add_generation_prompt, work.add_special_tokens)
        strs = [llm._model.token_get_text(t) for t in tokens] if work.token_strs else None
        return Tokens(tokens=tokens, strs=strs, context_length=self.context_length)

    async def detokenize(self, tokens: list[int]) -> str:
        llm = self._instances[0]
        ids = token_ids(TokenPrompt(tokens), llm.n_vocab(), "tokens")
        text = await asyncio.to_thread(llm.detokenize, ids, special=True)
        return text.decode("utf-8", errors="replace")

    async def embed(
        self, request_id: str, inputs: list[TextPrompt | TokenPrompt]
    ) -> Embeddings:
        return await self._embedder.embed(inputs)

    async def abort(self, request_id: str) -> None:
        cancel = self._cancels.get(request_id)
        if cancel is not None:
            cancel.set()

    async def health(self) -> None:
        if not self._started:
            raise EngineError("the llama.cpp engine has not loaded its model")

    async def close(self) -> None:
        for cancel in self._cancels.values():
            cancel.set()
        self._threads.shutdown(wait=True)
        self._embedder.close()
        for llm in self._instances:
            llm.close()
        self._instances = []


async def _relay(
    out: asyncio.Queue[tuple[str, Any]], run: _Run, prompt_tokens: int, params: SamplingParams
) -> AsyncIterator[Delta | Done]:
    """Turn the thread's token texts into deltas, cutting at stop strings."""
    stops = StopMatcher(params.stop)
    pending = Pending()
    produced = 0
    while True:
        kind, value = await out.get()
        if kind == "error":
            raise EngineError(f"llama.cpp failed: {value}") from value
        if kind == "echo":
            text, entries = value
            yield Delta(text=text, tokens=0, logprobs=entries)
            continue
        if kind == "end":
            if value == "aborted":
                return
            finish: Literal["stop", "length"] = "stop" if value == "eog" else "length"
            yield Done(finish_reason=finish, prompt_tokens=prompt_tokens,
                       completion_tokens=produced, text=stops.flush(), logprobs=pending.take())
            return
        produced += 1
        piece, logprob = value
        if logprob is not None:
            pending.add([logprob])
        # As vLLM: stop strings count only once min_tokens are out.
        text = stops.feed(piece) if produced > params.min_tokens else piece
        if stops.stopped:
            run.cancel.set()
            yield Done(finish_reason="stop", prompt_tokens=prompt_tokens,
                       completion_tokens=produced, text=text, stop=stops.matched,
                       logprobs=pending.take())
            return
        if text:
            yield Delta(text=text, tokens=1, logprobs=pending.take())


def _generate(llm: Any, run: _Run) -> None:
    """Thread body: sample up to `budget` tokens, reporting each one's text."""
    import llama_cpp

    try:
        params = run.params
        # llama.cpp seeds are 32-bit; the API accepts any 64-bit integer.
        llm.set_seed(params.seed % 2**32 if params.seed is not None else random.getrandbits(32))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        completion: list[int] = []
        vocab = llm._model.vocab
        held = run.eog if params.ignore_eos or params.min_tokens else []
        if run.echo is not None:
            entries = (None if params.logprobs is None
                       else prompt_logprobs(llm, run.tokens, params.logprobs))
            run.report(("echo", (run.echo, entries)))
            if run.budget == 0:
                run.report(("end", "length"))
                return
        for token in llm.generate(
            run.tokens, top_k=params.top_k, top_p=params.top_p, min_p=params.min_p,
            typical_p=1.0,
            temp=params.temperature, repeat_penalty=1.0, frequency_penalty=0.0,
            presence_penalty=0.0, reset=True, grammar=run.grammar,
            logits_processor=processors(params, held, run.tokens, completion),
        ):
            if run.cancel.is_set():
                run.report(("end", "aborted"))
                return
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                run.report(("end", "eog"))
                return
            logprob = _logprob(llm, token, params.logprobs)
            piece = llm.detokenize([token], prev_tokens=run.tokens + completion)
            completion.append(token)
            run.report(("token", (decoder.decode(piece), logprob)))
            if len(completion) >= run.budget:
                run.report(("end", "length"))
                return
    except Exception as exc:
        run.report(("error", exc))


def _eog_tokens(llm: Any) -> list[int]:
    """The ids that end generation (end of text, end of turn, ...)."""
    import llama_cpp

    vocab = llm._model.vocab
    return [t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)]


def _logprob(llm: Any, token: int, top: int | None) -> TokenLogprob | None:
    """The sampled token's log probability (and the `top` likeliest) from the logits it was
    sampled from: the last decoded position's, still current while the generator waits.
    None when the request asked for none."""
    if top is None:
        return None
    import llama_cpp
    import numpy as np

    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1),
                                   shape=(llm.n_vocab(),))
    return from_logits(logits, token, top, lambda t: llm.detokenize([t], special=True))


def _chat_formatter(llm: Any, template: str | None, opened: bool) -> Any:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    if not template:
        return None
    eos, bos = llm.token_eos(), llm.token_bos()
    return Jinja2ChatFormatter(
        template=template,
        eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
        bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
        add_generation_prompt=opened,
    )

"""The `vllm` engine: Hugging Face checkpoints through vLLM's async engine (GPU or CPU).

One `AsyncLLM` per replica; it batches every running job itself (continuous batching),
so a replica's `slots` are vLLM's `max_num_seqs`. The engine core and its rank workers
run in processes vLLM starts; with `tensor_parallel` above 1 they take the GPUs of the
replica's placement group (see `raylane.cluster.placement`). Nothing here blocks the
event loop once the engine is up: tokenizing runs in a thread, generation in vLLM's
processes.

Prompts are tokenized here, chat prompts with the checkpoint's own chat template, so the
context check, usage and stop handling are raylane's and the same as for llama.cpp; vLLM
gets token ids. A pool with `runner: pooling` serves `/v1/embeddings` and nothing else.
A GGUF file (or `bundled:smollm2-135m`) is converted once to a checkpoint
(`raylane.workers.checkpoints`).
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from raylane.cluster.backends import VllmOptions
from raylane.cluster.errors import ContextLengthExceeded, EngineError, InvalidRequest
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
from raylane.workers.checkpoints import hf_checkpoint
from raylane.workers.engine import pack
from raylane.workers.logprobs import Pending, from_vllm, prompt_entries
from raylane.workers.prompts import check_bias, completion_budget, token_ids
from raylane.workers.templates import template_inputs


class VllmEngine:
    def __init__(self, weights: Path, options: VllmOptions, slots: int,
                 tensor_parallel: int = 1) -> None:
        self.weights = weights
        self.options = options
        self.slots = slots
        self.tensor_parallel = tensor_parallel
        self.context_length = 0
        self.embeds = options.runner == "pooling"
        self._engine: Any = None
        self._tokenizer: Any = None

    async def start(self) -> None:
        from vllm.v1.engine.async_llm import AsyncLLM

        checkpoint = await asyncio.to_thread(hf_checkpoint, self.weights)
        if self.options.kv_cache_gb is not None:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = f"{self.options.kv_cache_gb:g}"
        self._engine = AsyncLLM.from_engine_args(self._engine_args(checkpoint))
        self._tokenizer = self._engine.get_tokenizer()
        self.context_length = self._engine.model_config.max_model_len

    def _engine_args(self, checkpoint: Path) -> Any:
        from vllm import AsyncEngineArgs

        o = self.options
        args: dict[str, Any] = {
            "model": str(checkpoint), "tensor_parallel_size": self.tensor_parallel,
            "dtype": o.dtype, "quantization": o.quantization,
            "gpu_memory_utilization": o.gpu_memory_utilization, "enforce_eager": o.enforce_eager,
            "max_num_seqs": o.max_num_seqs or self.slots, "runner": o.runner,
            "trust_remote_code": o.trust_remote_code, "disable_log_stats": True,
            "enable_log_requests": False,
        }
        optional = {"max_model_len": o.max_model_len, "convert": o.convert,
                    "distributed_executor_backend": o.distributed_executor_backend}
        args.update({k: v for k, v in optional.items() if v is not None})
        return AsyncEngineArgs(**args, **o.engine_args)

    async def generate(
        self, request_id: str, prompt: Prompt, params: SamplingParams
    ) -> AsyncIterator[Delta | Done]:
        from vllm import TokensPrompt

        if self.embeds:
            raise InvalidRequest("This model serves embeddings only (/v1/embeddings).")
        tokens = await asyncio.to_thread(self._tokens, prompt)
        check_bias(params, len(self._tokenizer))
        budget = completion_budget(len(tokens), params.max_tokens, self.context_length,
                                   params.limit)
        produced = 0
        pending = Pending()
        echo = params.echo
        async for out in self._outputs(TokensPrompt(prompt_token_ids=tokens),
                                       _sampling(params, budget), request_id):
            if echo:
                echo = False
                yield await self._echo(prompt, tokens, out.prompt_logprobs, params.logprobs)
                if budget == 0:  # the prompt alone: the one token vLLM made is no answer
                    yield Done(finish_reason="length", prompt_tokens=len(tokens),
                               completion_tokens=0)
                    return
            step = out.outputs[0]
            produced += len(step.token_ids)
            if params.logprobs is not None:
                pending.add(_logprobs(step, params.logprobs))
            if step.finish_reason is None:
                if step.text:
                    yield Delta(text=step.text, tokens=len(step.token_ids),
                                logprobs=pending.take())
                continue
            if step.finish_reason == "abort":
                return
            finish: Literal["stop", "length"] = (
                "length" if step.finish_reason == "length" else "stop")
            matched = step.stop_reason if isinstance(step.stop_reason, str) else None
            yield Done(finish_reason=finish, prompt_tokens=len(tokens),
                       completion_tokens=produced, text=step.text, stop=matched,
                       logprobs=pending.take())
            return

    async def _echo(self, prompt: Prompt, tokens: list[int], positions: list[Any] | None,
                    top: int | None) -> Delta:
        """The prompt as the answer's first delta (`SamplingParams.echo`): a text prompt as
        sent, else its tokens' text; with the log probabilities vLLM computed for it."""
        if isinstance(prompt, TextPrompt):
            text = prompt.text
        else:
            text = str(await asyncio.to_thread(self._tokenizer.decode, tokens))
        entries = None
        if top is not None and positions is not None:
            entries = prompt_entries(
                tokens, lambda i, token: from_vllm(token, positions[i], top),
                lambda token: str(self._tokenizer.decode([token])).encode())
        return Delta(text=text, tokens=0, logprobs=entries)

    async def _outputs(self, prompt: Any, sampling: Any, request_id: str) -> AsyncIterator[Any]:
        """vLLM's outputs; what vLLM refuses as the request's fault (say, a JSON schema its
        grammar backend cannot compile) becomes InvalidRequest."""
        from vllm.exceptions import VLLMClientError

        try:
            async for out in self._engine.generate(prompt, sampling, request_id):
                yield out
        except VLLMClientError as exc:
            raise InvalidRequest(f"vLLM refused the request: {exc}") from exc

    def _tokens(self, prompt: Prompt, param: str = "prompt", opened: bool = True,
                special: bool = True) -> list[int]:
        """The prompt's token ids: a chat rendered by the template (`opened`: with the
        assistant's turn begun), a text with the tokenizer's special tokens (`special`)."""
        tokenizer = self._tokenizer
        if isinstance(prompt, ChatPrompt):
            template = self.options.chat_template or getattr(tokenizer, "chat_template", None)
            messages, tools = template_inputs(prompt, template)
            try:
                ids = tokenizer.apply_chat_template(
                    messages, tools=tools, tokenize=True, add_generation_prompt=opened,
                    chat_template=self.options.chat_template)
            except Exception as exc:  # the template's raise_exception(), or no template
                raise InvalidRequest(f"The chat template rejected the messages: {exc}",
                                     param="messages") from exc
            return list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        if isinstance(prompt, TextPrompt):
            ids = list(tokenizer.encode(prompt.text, add_special_tokens=special))
            bos = tokenizer.bos_token_id
            return ids or ([bos] if bos is not None and special else [])
        return token_ids(prompt, len(tokenizer), param)

    async def tokenize(self, work: TokenizeInputs) -> Tokens:
        tokens = await asyncio.to_thread(self._tokens, work.prompt, "prompt",
                                         work.add_generation_prompt, work.add_special_tokens)
        strs = (list(self._tokenizer.convert_ids_to_tokens(tokens)) if work.token_strs
                else None)
        return Tokens(tokens=tokens, strs=strs, context_length=self.context_length)

    async def detokenize(self, tokens: list[int]) -> str:
        ids = token_ids(TokenPrompt(tokens), len(self._tokenizer), "tokens")
        return str(await asyncio.to_thread(self._tokenizer.decode, ids))

    async def embed(
        self, request_id: str, inputs: list[TextPrompt | TokenPrompt]
    ) -> Embeddings:
        if not self.embeds:
            raise InvalidRequest("This model does not serve embeddings: a vllm pool with "
                                 "`options.runner: pooling` does.", param="model")
        token_lists = [await asyncio.to_thread(self._tokens, item, "input") for item in inputs]
        for tokens in token_lists:
            if not tokens:
                raise InvalidRequest("An input must not be empty.", param="input")
            if len(tokens) > self.context_length:
                raise ContextLengthExceeded(
                    f"This model's maximum context length is {self.context_length} tokens, "
                    f"but an input has {len(tokens)} tokens.", param="input")
        vectors = await asyncio.gather(*(
            self._embed_one(f"{request_id}-{i}", tokens) for i, tokens in enumerate(token_lists)))
        return pack(vectors, sum(len(t) for t in token_lists))

    async def _embed_one(self, request_id: str, tokens: list[int]) -> list[float]:
        from vllm import PoolingParams, TokensPrompt

        final = None
        async for out in self._engine.encode(TokensPrompt(prompt_token_ids=tokens),
                                             PoolingParams(task="embed"), request_id):
            final = out
        if final is None:
            raise EngineError("vLLM returned no embedding.")
        vector = [float(v) for v in final.outputs.data.float().tolist()]
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    async def abort(self, request_id: str) -> None:
        if self._engine is not None:
            await self._engine.abort(request_id)

    async def health(self) -> None:
        if self._engine is None:
            raise EngineError("the vLLM engine has not started")
        try:
            await self._engine.check_health()
        except Exception as exc:
            raise EngineError(f"the vLLM engine is dead: {exc}") from exc

    async def close(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None


def _logprobs(step: Any, top: int) -> list[TokenLogprob]:
    """The log probabilities of a step's tokens, less the end-of-sequence (or stop) token
    that ended it: it is no part of the text, as for llama.cpp."""
    entries = [from_vllm(t, position, top)
               for t, position in zip(step.token_ids, step.logprobs or [], strict=True)]
    if step.finish_reason == "stop" and not isinstance(step.stop_reason, str):
        return entries[:-1]
    return entries


def _sampling(params: SamplingParams, budget: int) -> Any:
    """vLLM's sampling parameters for a raylane request: deltas, OpenAI's meanings. vLLM
    makes at least one token: with a budget of 0 (an echo of the prompt alone) the caller
    drops it."""
    from vllm import SamplingParams as VllmSampling
    from vllm.sampling_params import RequestOutputKind

    return VllmSampling(
        n=1, output_kind=RequestOutputKind.DELTA, max_tokens=max(budget, 1),
        temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
        min_p=params.min_p, min_tokens=params.min_tokens, ignore_eos=params.ignore_eos,
        repetition_penalty=params.repetition_penalty,
        stop=params.stop or None,
        seed=params.seed, presence_penalty=params.presence_penalty,
        frequency_penalty=params.frequency_penalty, structured_outputs=_structured(params),
        logprobs=params.logprobs, logit_bias=params.logit_bias or None,
        prompt_logprobs=params.logprobs if params.echo else None)


def _structured(params: SamplingParams) -> Any:
    """vLLM's structured outputs for a constrained answer (a JSON response format, a choice,
    a regex, a grammar); None for plain text."""
    from vllm.sampling_params import StructuredOutputsParams

    if params.json_schema is not None:
        return StructuredOutputsParams(json=params.json_schema)
    if params.json_object:
        return StructuredOutputsParams(json_object=True)
    if params.choice:
        return StructuredOutputsParams(choice=params.choice)
    if params.regex is not None:
        return StructuredOutputsParams(regex=params.regex)
    if params.grammar is not None:
        return StructuredOutputsParams(grammar=params.grammar)
    return None

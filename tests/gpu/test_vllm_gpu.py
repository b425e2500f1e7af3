"""The vllm engine scenarios of tests/integration/test_vllm.py, on a GPU.

Not part of `make test` (CI machines have no accelerator). On a machine with an NVIDIA
GPU and the `vllm` extra installed:

    .venv/bin/python -m pytest tests/gpu -p no:cacheprovider

The same checkpoint (made from the bundled GGUF) runs with vLLM's defaults for GPUs
(compiled, CUDA graphs); `test_tensor_parallel_*` needs three GPUs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from raylane.cluster.backends import VllmOptions
from raylane.cluster.messages import TextPrompt
from raylane.cluster.weights import resolve_weights
from raylane.workers.vllm_engine import VllmEngine
from tests.integration.test_vllm import (  # noqa: F401  (the scenarios, collected here too)
    generate,
    test_a_request_that_cannot_fit_the_context_is_refused,
    test_chat_answers_with_the_models_own_template,
    test_concurrent_requests_are_batched_and_abort_frees_them,
    test_embeddings_from_a_pooling_engine,
    test_max_tokens_bounds_the_answer_and_usage_is_exact,
    test_seed_repeats_and_temperature_zero_is_greedy,
    test_stop_strings_cut_the_answer_and_penalties_reach_the_engine,
    test_token_prompts_and_bad_tokens,
)

GPU = dict(max_model_len=1024, gpu_memory_utilization=0.3)

pytestmark = pytest.mark.asyncio(loop_scope="module")


def gpus() -> int:
    import torch

    return torch.cuda.device_count()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine() -> AsyncIterator[VllmEngine]:
    assert gpus() >= 1, "tests/gpu needs an NVIDIA GPU"
    engine = VllmEngine(resolve_weights("bundled:smollm2-135m"), VllmOptions(**GPU), 4)
    await engine.start()
    yield engine
    await engine.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def embedder() -> AsyncIterator[VllmEngine]:
    options = VllmOptions(**GPU, runner="pooling", convert="embed")
    engine = VllmEngine(resolve_weights("bundled:smollm2-135m"), options, 4)
    await engine.start()
    yield engine
    await engine.close()


async def test_tensor_parallel_3_answers_like_one_gpu(engine: VllmEngine) -> None:
    # SmolLM2-135M has 9 attention heads and 3 KV heads: tensor parallel must divide 3.
    if gpus() < 3:
        pytest.fail("this scenario needs three GPUs")
    wide = VllmEngine(resolve_weights("bundled:smollm2-135m"), VllmOptions(**GPU), 4,
                      tensor_parallel=3)
    await wide.start()
    try:
        prompt = TextPrompt("The capital of France is")
        one, _, _ = await generate(engine, prompt, temperature=0, max_tokens=12)
        three, _, _ = await generate(wide, prompt, temperature=0, max_tokens=12)
        assert one == three
    finally:
        await wide.close()

"""The `/v1/embeddings` answer: OpenAI's shape, floats or base64 of the same float32 bytes."""

from __future__ import annotations

import base64
import struct

import msgspec

from raylane.router.embeddings import embedding_response
from raylane.router.schemas import EmbeddingList
from raylane.workers.engine import pack

VECTORS = [[0.5, -0.25, 1.0], [0.0, 2.0, -1.5]]


def test_float_answer_lists_each_vector_in_input_order() -> None:
    body = embedding_response(pack(VECTORS, 7), "m", "float")
    msgspec.convert(body, EmbeddingList)  # the shape /openapi.json documents
    assert [d["embedding"] for d in body["data"]] == VECTORS
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    assert body["model"] == "m"


def test_base64_answer_is_little_endian_float32_as_the_openai_sdk_decodes_it() -> None:
    body = embedding_response(pack(VECTORS, 7), "m", "base64")
    msgspec.convert(body, EmbeddingList)
    for data, vector in zip(body["data"], VECTORS, strict=True):
        raw = base64.b64decode(data["embedding"])
        assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == vector

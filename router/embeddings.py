"""`/v1/embeddings`: one job for all of a request's inputs, answered in OpenAI's shape.

Workers send the vectors as raw little-endian float32 bytes; `base64` answers are
those bytes as they are (what the OpenAI SDK asks for by default and decodes with
numpy), `float` answers unpack them into JSON numbers.
"""

from __future__ import annotations

import base64
import sys
from array import array
from typing import Any

from raylane.cluster.messages import Embeddings


def embedding_response(result: Embeddings, model: str, encoding_format: str) -> dict[str, Any]:
    """The OpenAI `list` of `embedding` objects for `result`."""
    size = 4 * result.dim
    chunks = [result.vectors[i * size:(i + 1) * size] for i in range(result.count)]
    data = [{"object": "embedding", "index": i, "embedding": _encode(chunk, encoding_format)}
            for i, chunk in enumerate(chunks)]
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": result.prompt_tokens,
                      "total_tokens": result.prompt_tokens}}


def _encode(chunk: bytes, encoding_format: str) -> str | list[float]:
    if encoding_format == "base64":
        return base64.b64encode(chunk).decode()
    values = array("f")
    values.frombytes(chunk)
    if sys.byteorder == "big":
        values.byteswap()
    return values.tolist()

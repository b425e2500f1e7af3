"""The `sim` engine behind a bare OpenAI chat endpoint: the baseline of bench_router.

    python -m loadtest.sim_server --port 8100 --tokens-per-s 10000

One uvicorn process runs raylane's `SimEngine` for each request and answers
`POST /v1/chat/completions` (streaming or not) in OpenAI's shapes, the chunks
raylane's router sends. There is no queue, no Ray, no Redis, no validation beyond
what the engine needs: whatever raylane's latency adds on top of this server's is
the cost of the router and the queue. Never a way to serve users.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import AsyncIterator

import msgspec
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from raylane.cluster.backends import SimOptions
from raylane.cluster.messages import ChatPrompt, Done, Message, SamplingParams
from raylane.workers.sim import SimEngine


class _Turn(msgspec.Struct):
    role: str
    content: str


class _Body(msgspec.Struct):
    model: str
    messages: list[_Turn]
    max_tokens: int | None = None
    stream: bool = False


def create_app(options: SimOptions) -> FastAPI:
    """An app answering chat completions with one `SimEngine`."""
    app = FastAPI()
    app.state.engine = SimEngine(options)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = msgspec.json.decode(await request.body(), type=_Body)
        prompt = ChatPrompt([Message(role=m.role, content=m.content) for m in body.messages])
        items = app.state.engine.generate(uuid.uuid4().hex, prompt,
                                          SamplingParams(max_tokens=body.max_tokens))
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()),
                "model": body.model, "system_fingerprint": None}
        if body.stream:
            return StreamingResponse(_sse(head, items), media_type="text/event-stream")
        return Response(msgspec.json.encode(await _whole(head, items)),
                        media_type="application/json")

    return app


async def _sse(head: dict, items: AsyncIterator) -> AsyncIterator[bytes]:
    """OpenAI's chunks: the role with the first text, one chunk per delta, the finish."""
    first = True
    async for item in items:
        if isinstance(item, Done):
            choice = {"index": 0, "delta": {}, "logprobs": None,
                      "finish_reason": item.finish_reason}
            yield _event({**head, "object": "chat.completion.chunk", "choices": [choice]})
            break
        delta = {"role": "assistant", "content": item.text} if first else {"content": item.text}
        first = False
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        yield _event({**head, "object": "chat.completion.chunk", "choices": [choice]})
    yield b"data: [DONE]\n\n"


async def _whole(head: dict, items: AsyncIterator) -> dict:
    text = ""
    async for item in items:
        if isinstance(item, Done):
            message = {"role": "assistant", "content": text + item.text, "refusal": None}
            usage = {"prompt_tokens": item.prompt_tokens,
                     "completion_tokens": item.completion_tokens,
                     "total_tokens": item.prompt_tokens + item.completion_tokens}
            choice = {"index": 0, "message": message, "logprobs": None,
                      "finish_reason": item.finish_reason}
            return {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
        text += item.text
    raise RuntimeError("the engine ended without a final item")


def _event(chunk: dict) -> bytes:
    return b"data: " + msgspec.json.encode(chunk) + b"\n\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--tokens-per-s", type=float, default=10_000.0)
    args = parser.parse_args()
    app = create_app(SimOptions(tokens_per_s=args.tokens_per_s))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()

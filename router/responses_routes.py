"""HTTP route of OpenAI's Responses API: parse, hand to the logic, turn its answer into HTTP.

`X-Priority` and `X-Request-Timeout` work as on the other OpenAI routes; errors are
OpenAI's.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from raylane.router import models
from raylane.router.admission import admit
from raylane.router.http import SSE_HEADERS, read_body
from raylane.router.requests import decode, header_map
from raylane.router.responses import ResponseRun, response_id
from raylane.router.responses_protocol import ResponsesRequest
from raylane.router.responses_requests import response_job, response_tools
from raylane.router.state import RouterState
from raylane.router.timeline import with_queue_wait

responses_api = APIRouter()


@responses_api.post("/v1/responses")
async def create_response(request: Request) -> Response:
    state: RouterState = request.app.state.raylane
    req = decode(await read_body(request, state), ResponsesRequest)
    ticket = admit(state.config, req.model, req.priority, header_map(request.headers),
                   "response", req.user)
    tools = response_tools(req)
    job = response_job(req, ticket, state.reply_to, tools)
    run = ResponseRun(runner=state.runner, job=job, model=ticket.model,
                      id=response_id(ticket.response_id), request=req, tools=tools,
                      notes_every_s=state.config.router.queue_position_interval_s)
    if req.stream:
        return StreamingResponse(await run.stream(), media_type="text/event-stream",
                                 headers=SSE_HEADERS)
    return with_queue_wait(models.json_response(await run.collect()), run.timeline)

"""The model list (`/v1/models`) and the health answer."""

from __future__ import annotations

import msgspec
from redis.exceptions import RedisError
from starlette.responses import Response

from raylane.cluster.errors import ModelNotFound, ServiceUnavailable
from raylane.router.auth import check_model, visible_models
from raylane.router.state import RouterState

_json = msgspec.json.Encoder()


def json_response(body: object, status: int = 200) -> Response:
    return Response(_json.encode(body), status_code=status, media_type="application/json")


def model_list(state: RouterState) -> dict:
    cards = [_card(state, name, model.name) for model in visible_models(state.config)
             for name in (model.name, *model.aliases)]
    return {"object": "list", "data": cards}


def model_card(state: RouterState, name: str) -> dict:
    model = state.config.model(name)
    if model is None:
        raise ModelNotFound(f"The model '{name}' does not exist.", param="model")
    check_model([model.name, *model.aliases], name)
    return _card(state, name, model.name)


def _card(state: RouterState, name: str, root: str) -> dict:
    return {"id": name, "object": "model", "created": state.started, "owned_by": "raylane",
            "root": root, "parent": None if name == root else root}


async def health(state: RouterState) -> dict:
    try:
        await state.redis.ping()
    except (RedisError, OSError) as exc:
        raise ServiceUnavailable(f"Redis is unreachable: {exc}") from exc
    state.keeper.check()
    return {"status": "ok", "router": state.router_id}

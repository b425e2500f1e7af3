"""HTTP routes of API key administration (`/admin/keys`), mounted only with an admin key.

The admin key itself is checked by `auth.AuthMiddleware` before these routes run.
A created key's secret is in the answer of `POST /admin/keys` and nowhere else.
"""

from __future__ import annotations

import msgspec
from fastapi import APIRouter, Request
from starlette.responses import Response

from raylane.cluster.apikeys import ApiKey, KeyStore, Usage
from raylane.cluster.errors import InvalidRequest, NotFound
from raylane.router import models
from raylane.router.requests import decode

admin_api = APIRouter()


class CreateKey(ApiKey, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """The body of `POST /admin/keys`: a key's name and limits."""


class CreatedKey(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The answer of `POST /admin/keys`: the only place the key itself is ever shown."""

    name: str
    key: str


class KeyList(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    data: list[ApiKey]


class RevokedKey(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    revoked: bool


class KeyUsage(Usage, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """A key's usage so far, and what is left of its token budget."""

    name: str


def _store(request: Request) -> KeyStore:
    return request.app.state.raylane.key_store


@admin_api.post("/admin/keys")
async def create_key(request: Request) -> Response:
    spec = decode(await request.body(), CreateKey)
    record = ApiKey(**msgspec.structs.asdict(spec))
    try:
        secret = await _store(request).create(record)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="name") from None
    return models.json_response({"name": record.name, "key": secret})


@admin_api.get("/admin/keys")
async def list_keys(request: Request) -> Response:
    keys = await _store(request).list()
    return models.json_response({"data": [msgspec.to_builtins(k) for k in keys]})


@admin_api.delete("/admin/keys/{name}")
async def revoke_key(request: Request, name: str) -> Response:
    if not await _store(request).revoke(name):
        raise NotFound(f"No API key named '{name}'.", param="name")
    return models.json_response({"name": name, "revoked": True})


@admin_api.get("/admin/keys/{name}/usage")
async def key_usage(request: Request, name: str) -> Response:
    usage = await _store(request).usage(name)
    return models.json_response({"name": name, **msgspec.to_builtins(usage)})

"""`raylane keys create|list|revoke|usage`: API keys, straight in the cluster's Redis.

`create` prints the new key once; nothing else ever shows it again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import msgspec

from raylane.cluster.apikeys import ApiKey, KeyStore
from raylane.cluster.keys import Keys
from raylane.cluster.redis_client import connect


def add_keys_command(commands: Any) -> None:
    """Add `raylane keys ...` to the CLI's subcommands."""
    keys = commands.add_parser("keys", help="create, list, revoke API keys; show their usage")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="mint a key (printed once)")
    create.add_argument("--name", required=True)
    create.add_argument("--models", default="", help="comma-separated; default: all")
    create.add_argument("--rpm", type=int, default=0, help="requests per minute (0: no limit)")
    create.add_argument("--tpm", type=int, default=0, help="tokens per minute (0: no limit)")
    create.add_argument("--budget", type=int, help="tokens in all (default: no budget)")
    create.add_argument("--default-priority", type=int)
    create.add_argument("--max-priority", type=int,
                        help="most urgent priority allowed (more urgent is clamped to it)")
    actions.add_parser("list", help="every key's name and limits (no secrets)")
    revoke = actions.add_parser("revoke", help="revoke a key")
    revoke.add_argument("name")
    usage = actions.add_parser("usage", help="a key's requests and tokens")
    usage.add_argument("name")
    for action in actions.choices.values():
        action.add_argument("--redis-url", default=os.environ.get("REDIS_URL"),
                            required="REDIS_URL" not in os.environ,
                            help="the cluster's Redis (default: REDIS_URL)")
        action.add_argument("--prefix", default="raylane", help=argparse.SUPPRESS)


def run_keys(args: argparse.Namespace) -> int:
    """Run one `raylane keys` action."""
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    redis = connect(args.redis_url)
    store = KeyStore(redis, Keys(args.prefix))
    try:
        return await _act(store, args)
    finally:
        await redis.aclose()


async def _act(store: KeyStore, args: argparse.Namespace) -> int:
    if args.action == "create":
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        key = ApiKey(name=args.name, models=models, rpm=args.rpm, tpm=args.tpm,
                     budget=args.budget, default_priority=args.default_priority,
                     max_priority=args.max_priority)
        try:
            print(await store.create(key))
        except ValueError as exc:
            print(f"raylane: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.action == "list":
        print(json.dumps([msgspec.to_builtins(k) for k in await store.list()], indent=2))
        return 0
    if args.action == "revoke":
        if not await store.revoke(args.name):
            print(f"raylane: no API key named {args.name!r}", file=sys.stderr)
            return 1
        print(f"raylane: revoked {args.name}")
        return 0
    print(json.dumps(msgspec.to_builtins(await store.usage(args.name)), indent=2))
    return 0

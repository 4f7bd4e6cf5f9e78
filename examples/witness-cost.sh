#!/usr/bin/env bash
# What a witness costs, measured: two data nodes and a witness on 127.0.0.1, a write
# load from `baton bench` against them, then each node's peak memory (VmHWM), bytes
# written to storage (/proc/PID/io) and data directory size (du), side by side.
#
#   cargo build --release -p baton-node -p baton-console
#   examples/witness-cost.sh [CLIENTS] [SECONDS]      # default 16 clients, 20 s
#
# Everything lives in a temporary directory, removed at the end with the processes.
set -euo pipefail
clients=${1:-16}
seconds=${2:-20}
bin=${BATON_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release}
for tool in baton baton-node; do
    [[ -x $bin/$tool ]] || { echo "missing $bin/$tool: cargo build --release -p baton-node -p baton-console" >&2; exit 2; }
done
work=$(mktemp -d /tmp/witness-cost.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Three free UDP ports on loopback.
read -r p1 p2 p3 < <(python3 -c '
import socket
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
n1=127.0.0.1:$p1 n2=127.0.0.1:$p2 w1=127.0.0.1:$p3
"$bin/baton" certs --out "$work/certs" --nodes n1,n2,w1 >/dev/null
start() { # ID ADDR ARGS...
    local id=$1 addr=$2
    shift 2
    "$bin/baton-node" --id "$id" --listen "$addr" --data-dir "$work/$id" --certs "$work/certs" "$@" \
        >"$work/$id.log" 2>&1 &
    pids+=($!)
    eval "pid_$id=$!"
}
start n1 "$n1" --peer "n2=$n2"
start n2 "$n2" --peer "n1=$n1"
baton() { "$bin/baton" --cluster "$n1,$n2" --certs "$work/certs" --timeout 20 "$@"; }
baton put witness-cost/ready yes >/dev/null
start w1 "$w1" --join "$n1,$n2" --witness
baton member add w1 "$w1" --witness >/dev/null
# Promoted once caught up: `member list` then shows it as a witness voter.
for _ in $(seq 200); do
    if baton member list --json | python3 -c '
import json, sys
view = json.load(sys.stdin)
ok = [m for m in view["members"] if m["name"] == "w1" and m["role"] == "witness" and m["voter"]]
sys.exit(0 if ok and not view["change_pending"] else 1)' 2>/dev/null; then break; fi
    sleep 0.1
done
baton member list
rss_idle_kib=$(awk '/VmRSS/ {print $2}' "/proc/$pid_w1/status")
echo
"$bin/baton" --cluster "$n1,$n2,$w1" --certs "$work/certs" bench --clients "$clients" --duration "$seconds"
echo
printf '%-4s %12s %12s %14s %12s\n' node "rss now KiB" "peak KiB" "written bytes" "dir bytes"
for id in n1 n2 w1; do
    pid_var=pid_$id
    pid=${!pid_var}
    printf '%-4s %12s %12s %14s %12s\n' "$id" \
        "$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")" \
        "$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")" \
        "$(awk '/^write_bytes/ {print $2}' "/proc/$pid/io")" \
        "$(du -sb "$work/$id" | cut -f1)"
done
echo "w1 rss before the load: $rss_idle_kib KiB"

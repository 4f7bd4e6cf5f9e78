#!/usr/bin/env bash
# Installs a baton .deb on this machine (as root), starts a one-node cluster from it as
# the package's `baton` user (setpriv execs it, so signals reach the node) with the
# packaged config, writes and reads a key through the packaged `baton`, then removes the
# package and everything the test made.
# Refuses to run where Baton is already installed or configured.
#   examples/debian/smoke-test.sh target/deb/baton_<version>_amd64.deb
set -euo pipefail
deb=${1:?the .deb to install}
[ "$(id -u)" -eq 0 ] || { echo "smoke-test: run as root (it installs a package)" >&2; exit 1; }
if dpkg -s baton >/dev/null 2>&1 || [ -e /etc/baton ] || [ -e /var/lib/baton ]; then
    echo "smoke-test: baton is already installed or /etc/baton or /var/lib/baton exists; not touching them" >&2
    exit 1
fi
node_pid=""
cleanup() {
    [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null || true
    dpkg --purge baton >/dev/null 2>&1 || true
    rm -rf /etc/baton /var/lib/baton
    userdel baton >/dev/null 2>&1 || true
    getent group baton >/dev/null && groupdel baton >/dev/null 2>&1 || true
}
trap cleanup EXIT

dpkg -i "$deb"
for path in /usr/bin/baton-node /usr/bin/baton /lib/systemd/system/baton-node.service \
    /etc/baton/baton-node.toml /usr/share/man/man1/baton.1.gz /usr/share/man/man1/baton-node.1.gz \
    /usr/share/bash-completion/completions/baton; do
    [ -e "$path" ] || { echo "smoke-test: $path is not installed" >&2; exit 1; }
done
grep -q '^Type=notify' /lib/systemd/system/baton-node.service
grep -q '^ExecReload=/bin/kill -HUP $MAINPID' /lib/systemd/system/baton-node.service
if command -v systemd-analyze >/dev/null; then
    # The unit as systemd reads it: every key known and in its section.
    verdict=$(systemd-analyze verify /lib/systemd/system/baton-node.service 2>&1 || true)
    if [ -n "$verdict" ]; then
        echo "smoke-test: systemd-analyze verify: $verdict" >&2
        exit 1
    fi
fi
getent passwd baton >/dev/null
[ "$(stat -c %U /var/lib/baton)" = baton ]

baton certs --out /etc/baton/certs --nodes n1 >/dev/null
chown -R root:baton /etc/baton/certs
chmod 0750 /etc/baton/certs
chmod 0640 /etc/baton/certs/*
port=$(( 20000 + RANDOM % 20000 ))
# The packaged config as it is, but on loopback (a flag wins over the file).
setpriv --reuid baton --regid baton --init-groups baton-node --config /etc/baton/baton-node.toml --listen "127.0.0.1:$port" \
    2>/tmp/baton-smoke-node.log &
node_pid=$!
export BATON_CLUSTER="127.0.0.1:$port" BATON_CERTS=/etc/baton/certs
for _ in $(seq 1 100); do
    baton status >/dev/null 2>&1 && break
    kill -0 "$node_pid" 2>/dev/null || { echo "smoke-test: the node stopped:" >&2; cat /tmp/baton-smoke-node.log >&2; exit 1; }
    sleep 0.2
done
baton status
baton put smoke ok --timeout 5
[ "$(baton get smoke)" = ok ]
kill -TERM "$node_pid"
wait "$node_pid"
node_pid=""
dpkg -r baton
[ ! -e /usr/bin/baton-node ] || { echo "smoke-test: removing left /usr/bin/baton-node" >&2; exit 1; }
echo "smoke-test: installed, started as user baton, wrote and read a key, removed: ok"

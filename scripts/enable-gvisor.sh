#!/usr/bin/env bash
# Registers gVisor's runsc with the local Docker engine, so that
# `sandboxd --runtime runsc` can run contexts in it. Installs Debian's runsc
# package when runsc is missing. Safe to run again: it changes nothing when
# the runtime is already registered.
#
# runsc runs with two flags sandboxd needs:
#   --host-uds=all     the Jupyter server's unix socket, made inside the
#                      sandbox on a shared directory, is reachable from the
#                      host (by default gVisor keeps it inside), and a
#                      context with networking reaches the daemon's egress
#                      proxy on a socket the daemon made;
#   --network=none     contexts have no network anyway, and runsc's own
#                      network set-up fails in some nested environments.
set -euo pipefail

CONFIG=${DOCKER_CONFIG_FILE:-/etc/docker/daemon.json}
log() { echo "enable-gvisor: $*" >&2; }
registered() { docker info --format '{{json (index .Runtimes "runsc")}}' 2>/dev/null | grep -q -- '--host-uds=all'; }

if registered; then
	log "runsc is already registered"
	exit 0
fi
if ! command -v runsc >/dev/null; then
	log "installing runsc"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runsc >/dev/null
fi
if ! command -v python3 >/dev/null; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-minimal >/dev/null
fi

log "registering runsc in $CONFIG"
mkdir -p "$(dirname "$CONFIG")"
python3 - "$CONFIG" "$(command -v runsc)" <<'EOF'
import json, os, sys
path, runsc = sys.argv[1], sys.argv[2]
config = json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else {}
config.setdefault("runtimes", {})["runsc"] = {
    "path": runsc,
    "runtimeArgs": ["--host-uds=all", "--network=none"],
}
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(config, f, indent=2)
os.replace(tmp, path)
EOF

# The engine rereads its runtimes on SIGHUP; no restart, no container stops.
pkill -HUP -x dockerd
for _ in $(seq 1 20); do
	if registered; then
		log "runsc registered"
		exit 0
	fi
	sleep 0.5
done
log "the engine did not pick up runsc; is dockerd on this machine reading $CONFIG?"
exit 1

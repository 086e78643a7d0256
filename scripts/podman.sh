#!/usr/bin/env bash
# Makes a Podman engine that sandboxd can run against: installs podman when
# it is missing, serves its Docker-compatible API on $PODMAN_SOCK, and loads
# the kernel images from the Docker engine into it. Run it as often as you
# like: what is done already is kept, so a second run costs a second.
#
# Then: DOCKER_HOST=unix://$PODMAN_SOCK sandboxd (or `make test-podman`).
set -euo pipefail

cd "$(dirname "$0")/.."

PODMAN_SOCK=${PODMAN_SOCK:-/run/sandboxd-podman/podman.sock}
# The kernel images, and the daemon's own, which a test starts a context from.
PODMAN_IMAGES=${PODMAN_IMAGES:-sandboxd/python-kernel:latest sandboxd/bash-kernel:latest sandboxd/r-kernel:latest sandboxd/sandboxd:latest}
# Where the runc wrapper goes, when this machine needs it (see below).
RUNC_WRAPPER=/usr/local/lib/sandboxd-podman/runc
PODMAN_CONF=/etc/containers/containers.conf.d/sandboxd-podman.conf

log() { echo "podman: $*" >&2; }

if ! command -v podman >/dev/null; then
	log "installing podman"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman >/dev/null
fi

# install_file DEST MODE: writes stdin to DEST unless DEST holds that
# already, and says whether it wrote.
install_file() {
	local new
	new=$(cat)
	if [ -f "$1" ] && [ "$(cat "$1")" = "$new" ]; then
		return 1
	fi
	mkdir -p "$(dirname "$1")"
	printf '%s\n' "$new" >"$1"
	chmod "$2" "$1"
}

# Podman 4.3, as root, gives every container nofile and nproc rlimits of
# 1048576 unless told otherwise; its compat API takes containers.conf's
# default_ulimits only when a request names no ulimit at all, and sandboxd
# names nofile, so nproc is always 1048576. Without CAP_SYS_RESOURCE (in an
# unprivileged container, say) no process may raise a hard limit, and runc
# fails with "error setting rlimit type 6: operation not permitted". There,
# and only there, runc runs through scripts/podman-runc, which lowers the
# two limits to the most it may set: what containers on Docker inherit.
has_cap_sys_resource() {
	local eff
	eff=$(awk '/^CapEff:/ {print $2}' /proc/self/status)
	(((0x$eff >> 24) & 1))
}
changed=
if ! has_cap_sys_resource; then
	if ! command -v jq >/dev/null; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null
	fi
	runc=$(command -v runc) || { log "no runc to wrap"; exit 1; }
	sed "s|@RUNC@|$runc|" scripts/podman-runc | install_file "$RUNC_WRAPPER" 755 && changed=1
	install_file "$PODMAN_CONF" 644 <<-EOF && changed=1
		# Written by sandboxd's scripts/podman.sh: see $RUNC_WRAPPER.
		[engine]
		runtime = "runc"
		[engine.runtimes]
		runc = ["$RUNC_WRAPPER"]
	EOF
fi

answers() { curl -sf --max-time 5 --unix-socket "$PODMAN_SOCK" http://podman/_ping >/dev/null 2>&1; }

# The service reads its configuration when it starts: one started before
# the wrapper was written is restarted, if it was started here.
pidfile=$(dirname "$PODMAN_SOCK")/podman.pid
pid=$(cat "$pidfile" 2>/dev/null || true)
if [ -n "$changed" ] && [ -n "$pid" ] && [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == "podman system service "* ]]; then
	log "restarting the service for the new configuration"
	kill "$pid"
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
if ! answers; then
	log "starting podman system service on $PODMAN_SOCK"
	mkdir -p "$(dirname "$PODMAN_SOCK")"
	rm -f "$PODMAN_SOCK"
	# From its own directory: conmon leaves a file named oom in the
	# service's working directory when a container runs out of memory.
	(cd "$(dirname "$PODMAN_SOCK")" && exec setsid podman system service --time=0 "unix://$PODMAN_SOCK" \
		>service.log 2>&1 </dev/null) &
	echo $! >"$pidfile"
	for _ in $(seq 300); do answers && break; sleep 0.1; done
	if ! answers; then
		log "the service does not answer; its log:"
		cat "$(dirname "$PODMAN_SOCK")/service.log" >&2
		exit 1
	fi
fi

# An image is loaded only when Podman lacks that exact one (same ID).
# Podman stores a loaded image as localhost/NAME; its compat API resolves
# NAME to that (in ImageInspect as in ContainerCreate), as 4.3 does, or to
# docker.io/NAME, as Docker's reference rules would, which a tag then makes.
podman_api() { docker -H "unix://$PODMAN_SOCK" "$@"; }
for img in $PODMAN_IMAGES; do
	if ! id=$(docker image inspect -f '{{.Id}}' "$img" 2>/dev/null); then
		log "$img is not in Docker; skipped"
		continue
	fi
	if [ "$(podman_api image inspect -f '{{.Id}}' "$img" 2>/dev/null)" = "$id" ]; then
		continue
	fi
	log "loading $img"
	docker save "$img" | podman load -q >/dev/null
	# The image this one replaces is now untagged: drop it.
	podman image prune -f --filter label=sandboxd.inputs >/dev/null
	if [ "$(podman_api image inspect -f '{{.Id}}' "$img" 2>/dev/null)" != "$id" ]; then
		podman tag "$id" "docker.io/$img"
	fi
	if [ "$(podman_api image inspect -f '{{.Id}}' "$img" 2>/dev/null)" != "$id" ]; then
		log "$img does not resolve to $id through the compat API"
		exit 1
	fi
done

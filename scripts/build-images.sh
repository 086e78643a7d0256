#!/usr/bin/env bash
# Builds the images sandboxd needs: the kernel images and the sandboxd image.
# `--kernel-only` builds the kernel images alone. KERNEL_IMAGES picks which
# kernel images to build, in order, from "python r bash javascript" (the
# default; set it empty to build none). The javascript image is built on the
# python one, so it is rebuilt when that changes.
#
# The base image is pulled when a registry is reachable. Where none is, a Debian
# base is made locally with debootstrap and `docker import`, so the Dockerfiles
# stay ordinary for everyone else. Images whose inputs did not change are kept.
#
# DOCKER names the engine's CLI: DOCKER=podman builds them with Podman, into
# its own store.
set -euo pipefail

cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-debian:trixie-slim}
LOCAL_BASE=${LOCAL_BASE:-sandboxd/debian-base:trixie}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
KERNEL_IMAGE=${KERNEL_IMAGE:-sandboxd/python-kernel:latest}
R_KERNEL_IMAGE=${R_KERNEL_IMAGE:-sandboxd/r-kernel:latest}
BASH_KERNEL_IMAGE=${BASH_KERNEL_IMAGE:-sandboxd/bash-kernel:latest}
JAVASCRIPT_KERNEL_IMAGE=${JAVASCRIPT_KERNEL_IMAGE:-sandboxd/javascript-kernel:latest}
KERNEL_IMAGES=${KERNEL_IMAGES-python r bash javascript}
SANDBOXD_IMAGE=${SANDBOXD_IMAGE:-sandboxd/sandboxd:latest}
DOCKER=${DOCKER:-docker}

log() { echo "build-images: $*" >&2; }

have_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

# base_image prints the name of a usable Debian trixie base image. Where
# $BASE_IMAGE cannot be pulled, the one made with debootstrap also gets that
# name, locally, so that the Dockerfiles and a bare docker-compose build find
# their default base; a later pull replaces it.
base_image() {
	if have_image "$BASE_IMAGE"; then echo "$BASE_IMAGE"; return; fi
	if ! have_image "$LOCAL_BASE" && timeout 60 "$DOCKER" pull "$BASE_IMAGE" >/dev/null 2>&1; then
		echo "$BASE_IMAGE"
		return
	fi
	if ! have_image "$LOCAL_BASE"; then
		log "cannot pull $BASE_IMAGE; making $LOCAL_BASE with debootstrap"
		if ! command -v debootstrap >/dev/null; then
			apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
		fi
		local dir
		dir=$(mktemp -d)
		trap 'rm -rf "$dir"' RETURN
		debootstrap --variant=minbase trixie "$dir" "$DEBIAN_MIRROR" >&2
		# Keep the image small, as the slim image does.
		rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/archives/*.deb
		tar -C "$dir" -c . | "$DOCKER" import - "$LOCAL_BASE" >/dev/null
	fi
	"$DOCKER" tag "$LOCAL_BASE" "$BASE_IMAGE"
	log "$BASE_IMAGE is $LOCAL_BASE, made with debootstrap"
	echo "$BASE_IMAGE"
}

# inputs_hash hashes everything an image is built from, so an unchanged image
# is never rebuilt.
inputs_hash() { (echo "$1"; tar -C "$2" -c --sort=name --mtime=@0 --owner=0 --group=0 .) | sha256sum | cut -c1-16; }

# build NAME CONTEXT_DIR DOCKERFILE BASE
build() {
	local name=$1 dir=$2 file=$3 base=$4 hash
	hash=$(inputs_hash "$("$DOCKER" image inspect -f '{{.Id}}' "$base")" "$dir")
	if [ "$("$DOCKER" image inspect -f '{{index .Config.Labels "sandboxd.inputs"}}' "$name" 2>/dev/null)" = "$hash" ]; then
		log "$name is up to date"
		return
	fi
	log "building $name"
	"$DOCKER" build -q --build-arg BASE_IMAGE="$base" --label sandboxd.inputs="$hash" -f "$file" -t "$name" "$dir" >/dev/null
	# The image this one replaces is now untagged: drop it.
	"$DOCKER" image prune -f --filter label=sandboxd.inputs >/dev/null
}

# kernel_image_name KIND prints the image name for a kind in KERNEL_IMAGES.
kernel_image_name() {
	case $1 in
	python) echo "$KERNEL_IMAGE" ;;
	r) echo "$R_KERNEL_IMAGE" ;;
	bash) echo "$BASH_KERNEL_IMAGE" ;;
	javascript) echo "$JAVASCRIPT_KERNEL_IMAGE" ;;
	*) return 1 ;;
	esac
}

# Check every name first, so a typo fails before a long build, not after.
for kind in $KERNEL_IMAGES; do
	if ! kernel_image_name "$kind" >/dev/null; then
		log "unknown kernel image '$kind' in KERNEL_IMAGES (known: python r bash javascript)"
		exit 2
	fi
done

# kernel_image_base KIND prints the image a kind is built on.
kernel_image_base() {
	case $1 in
	javascript)
		if ! have_image "$KERNEL_IMAGE"; then
			log "the javascript image is built on $KERNEL_IMAGE, which is missing: build python first"
			return 1
		fi
		echo "$KERNEL_IMAGE"
		;;
	*) echo "$base" ;;
	esac
}

base=$(base_image)
for kind in $KERNEL_IMAGES; do
	kind_base=$(kernel_image_base "$kind")
	build "$(kernel_image_name "$kind")" "images/$kind-kernel" "images/$kind-kernel/Dockerfile" "$kind_base"
done
if [ "${1:-}" != "--kernel-only" ]; then
	ctx=$(mktemp -d)
	trap 'rm -rf "$ctx"' EXIT
	# The binary make build made goes in, in place of the Dockerfile's build
	# stage: the host's Go build cache makes it seconds where that stage,
	# with no cache across source changes, takes minutes. The rest is the
	# Dockerfile's last stage, as docker-compose builds it.
	cp bin/sandboxd "$ctx/"
	{
		echo 'ARG BASE_IMAGE'
		sed -n '/^FROM \${BASE_IMAGE}$/,$p' images/sandboxd/Dockerfile | sed 's|^COPY --from=build /sandboxd |COPY sandboxd |'
	} >"$ctx/Dockerfile"
	grep -q '^COPY sandboxd /usr/local/bin/sandboxd$' "$ctx/Dockerfile" || { log "images/sandboxd/Dockerfile: no last stage that copies /sandboxd"; exit 1; }
	build "$SANDBOXD_IMAGE" "$ctx" "$ctx/Dockerfile" "$base"
fi

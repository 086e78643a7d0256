#!/usr/bin/env bash
# Builds what the test cluster runs into a cache outside the repository,
# keyed by version, and does nothing when it is already there: Kubernetes'
# binaries and the NetworkPolicy enforcer (kube-router's firewall) from the
# Go module proxy, etcd, the CNI plugins and ipset from Debian's packages,
# and the pause program. Prints the cache's path.
#
# kube-router rather than kube-network-policies: the latter only works with
# nftables' queue expression, which kernels without CONFIG_NFT_QUEUE lack.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.34.4}
KUBE_ROUTER_VERSION=${KUBE_ROUTER_VERSION:-v2.1.0}
ETCD_DEB=${ETCD_DEB:-pool/main/e/etcd/etcd-server_3.5.16-4_amd64.deb}
CNI_DEB=${CNI_DEB:-pool/main/g/golang-github-containernetworking-plugins/containernetworking-plugins_1.1.1+ds1-3+b17_amd64.deb}
IPSET_DEBS=${IPSET_DEBS:-pool/main/i/ipset/ipset_7.17-1_amd64.deb pool/main/i/ipset/libipset13_7.17-1_amd64.deb}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
GO_VERSION=$(go env GOVERSION)
CACHE=${SANDBOXD_CACHE:-/var/cache/sandboxd}/kube/$KUBE_VERSION-kr$KUBE_ROUTER_VERSION-$GO_VERSION
BIN=$CACHE/bin
mkdir -p "$BIN"

log() { echo "kube/build: $*" >&2; }

kube_bins=(kube-apiserver kubelet kube-scheduler kube-controller-manager kube-proxy kubectl)
missing=()
for b in "${kube_bins[@]}"; do [[ -x $BIN/$b ]] || missing+=("$b"); done
if ((${#missing[@]})); then
	log "building ${missing[*]} $KUBE_VERSION (minutes, once)"
	src=$(mktemp -d "$CACHE/src.XXXX")
	trap 'rm -rf "$src"' EXIT
	gomod=$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
	staging=$(grep -E '=> \./staging' "$gomod" | awk '{print $1}' | grep -v -E 'sample-(cli-plugin|controller)')
	{
		echo "module sandboxd.local/kubebuild"
		echo "go $(go env GOVERSION | sed 's/^go//; s/\.[0-9]*$//')"
		echo "require k8s.io/kubernetes $KUBE_VERSION"
		for m in $staging; do echo "replace $m => $m v0${KUBE_VERSION#v1}"; done
	} >"$src/go.mod"
	{
		echo "//go:build tools"
		echo "package tools"
		echo "import ("
		for b in "${kube_bins[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$b\""; done
		echo ")"
	} >"$src/tools.go"
	(cd "$src" && go mod tidy >&2)
	minor=$(cut -d. -f2 <<<"$KUBE_VERSION")
	ldflags="-s -w"
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
	done
	pkgs=()
	for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
	(cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$BIN/" "${pkgs[@]}")
fi

if [[ ! -x $BIN/kube-router ]]; then
	log "building kube-router $KUBE_ROUTER_VERSION"
	GOBIN=$BIN CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$KUBE_ROUTER_VERSION" >&2
fi

if [[ ! -x $BIN/pause ]]; then
	log "building pause"
	(cd "$(dirname "$0")/pause" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/pause" .)
fi

fetch_deb() { # deb-in-mirror path-in-deb dest
	local tmp
	tmp=$(mktemp -d)
	curl -fsSL --retry 3 -o "$tmp/p.deb" "$MIRROR/$1"
	dpkg -x "$tmp/p.deb" "$tmp/x"
	cp -a "$tmp/x/$2" "$3"
	rm -rf "$tmp"
}
if [[ ! -x $BIN/etcd ]]; then
	log "fetching etcd from trixie"
	fetch_deb "$ETCD_DEB" usr/bin/etcd "$BIN/etcd"
fi
if [[ ! -x $CACHE/cni/bridge ]]; then
	log "fetching the CNI plugins"
	mkdir -p "$CACHE/cni"
	fetch_deb "$CNI_DEB" usr/lib/cni/. "$CACHE/cni"
fi
if [[ ! -x $CACHE/ipset/usr/sbin/ipset ]]; then
	log "fetching ipset"
	mkdir -p "$CACHE/ipset"
	for deb in $IPSET_DEBS; do fetch_deb "$deb" . "$CACHE/ipset"; done
fi
echo "$CACHE"

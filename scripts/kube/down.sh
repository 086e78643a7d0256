#!/usr/bin/env bash
# Stops what scripts/kube/up.sh started and removes what it and its
# components left on the host: mounts, network namespaces, the pod bridge,
# iptables chains, nftables tables, ipsets, cgroups, sysctls and files
# outside the state directory. Keeps the state directory's logs and the
# images imported into its containerd (importing them again would take
# minutes); SANDBOXD_KUBE_PURGE=1 removes those too.
# Safe to run when nothing is up. Leaves Docker's containers, networks and
# rules alone: everything it removes is named or recorded by the cluster.
set -uo pipefail

DIR=${SANDBOXD_KUBE_DIR:-/var/lib/sandboxd-kube}
POD_NET=10.244.0.
BRIDGE=skube0
RUN=$DIR/run
SOCK=$DIR/containerd/containerd.sock
CACHE=$(cat "$DIR/cache" 2>/dev/null || true)
started=$(date +%s.%N)
log() { awk -v t="$(date +%s.%N)" -v s="$started" -v m="$*" 'BEGIN { printf "kube/down: %5.1fs %s\n", t - s, m }' >&2; }

ctr() { /usr/bin/ctr -a "$SOCK" -n k8s.io "$@"; }
kubectl() { "$CACHE/bin/kubectl" --kubeconfig "$DIR/admin.kubeconfig" "$@"; }
pid_of() { [[ -f $RUN/$1.pid ]] && cat "$RUN/$1.pid"; }
alive() { local pid && pid=$(pid_of "$1") && kill -0 "$pid" 2>/dev/null; }
stop() { # name...: SIGTERM, then SIGKILL after 10 s
	local name pid i
	for name; do alive "$name" && kill "$(pid_of "$name")"; done
	for name; do
		pid=$(pid_of "$name") || continue
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
		rm -f "$RUN/$name.pid"
	done
}
tasks() { ctr tasks ls -q 2>/dev/null; }

# Let kubelet stop the pods itself, so that the CNI tears their network
# down and the sandboxes' mounts go; the controllers go first so that no
# pod is made again.
stop kube-scheduler kube-controller-manager
if alive kubelet && alive kube-apiserver && [[ -n $(tasks) ]]; then
	kubectl delete pods --all --all-namespaces --grace-period=1 --wait=false >/dev/null 2>&1
	for ((i = 0; i < 150; i++)); do
		[[ -z $(tasks) ]] && break
		sleep 0.2
	done
	log "pods stopped"
fi
stop kubelet kube-proxy kube-router kube-apiserver etcd

# Whatever is left in containerd: kill it. The pods' network namespaces
# are mounts under the state directory, which go below.
if alive containerd; then
	for id in $(tasks); do ctr tasks kill -s SIGKILL "$id" >/dev/null 2>&1; done
	for id in $(ctr containers ls -q 2>/dev/null); do
		ctr tasks delete -f "$id" >/dev/null 2>&1
		ctr containers rm "$id" >/dev/null 2>&1
	done
fi
stop containerd
for p in /proc/[0-9]*; do # shims of this containerd
	tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "-address $SOCK " && kill -9 "${p#/proc/}" 2>/dev/null
done
log "processes stopped"

# Mounts under the state directory, deepest first.
awk -v d="$DIR/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
	umount "$m" 2>/dev/null || umount -l "$m"
done

ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE"

# iptables: kube-router's and kubelet's KUBE-* chains, and the rules of the
# CNI firewall plugin that name the pod network. CNI's shared chains go only
# when nothing else is left in them.
clean_iptables() { # iptables|ip6tables
	local cmd=$1 t save rule c chains
	for t in filter nat mangle raw; do
		save=$("$cmd-save" -t "$t" 2>/dev/null) || continue
		grep -E -- '^-A .*-j KUBE-' <<<"$save" | grep -vE '^-A KUBE-' | while read -r rule; do
			eval "$cmd -t $t -D ${rule#-A }"
		done
		grep -E "^-A CNI-.*$POD_NET" <<<"$save" | while read -r rule; do
			eval "$cmd -t $t -D ${rule#-A }"
		done
		chains=$(grep -oE '^:KUBE-[^ ]+' <<<"$save" | cut -c2-)
		for c in $chains; do "$cmd" -t "$t" -F "$c"; done
		for c in $chains; do "$cmd" -t "$t" -X "$c"; done
		if [[ $t == filter ]] && "$cmd" -t filter -S CNI-ADMIN 2>/dev/null | grep -qx -- '-N CNI-ADMIN' &&
			[[ $("$cmd" -t filter -S CNI-ADMIN | wc -l) == 1 && $("$cmd" -t filter -S CNI-FORWARD | wc -l) == 2 ]]; then
			"$cmd-save" -t filter | grep -E -- '^-A [A-Z]+ .*-j CNI-FORWARD' | while read -r rule; do
				eval "$cmd -t filter -D ${rule#-A }"
			done
			"$cmd" -t filter -F CNI-FORWARD && "$cmd" -t filter -X CNI-FORWARD && "$cmd" -t filter -X CNI-ADMIN
		fi
	done
}
clean_iptables iptables
clean_iptables ip6tables
for family in ip ip6; do
	nft list table "$family" kube-proxy >/dev/null 2>&1 && nft delete table "$family" kube-proxy
done
if [[ -x $CACHE/ipset/usr/sbin/ipset ]]; then
	ipset() { LD_LIBRARY_PATH=$CACHE/ipset/usr/lib/x86_64-linux-gnu "$CACHE/ipset/usr/sbin/ipset" "$@"; }
	for set in $(ipset list -n 2>/dev/null | grep -E '^(inet6:)?(KUBE-|kube-router-)'); do
		ipset destroy "$set"
	done
fi

# Cgroups kubelet made (cgroupfs driver), innermost first.
for d in /sys/fs/cgroup/*/kubepods; do
	[[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
done

if [[ -f $DIR/sysctl.saved ]]; then
	sysctl -q -p "$DIR/sysctl.saved" >/dev/null
fi

# Paths outside --root-dir that kubelet, containerd and the CNI use.
rm -f /var/lib/kubelet/device-plugins/kubelet.sock /var/lib/kubelet/device-plugins/DEPRECATION
rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet 2>/dev/null
for l in /var/log/containers/*.log; do
	[[ -L $l && $(readlink "$l") == "$DIR/"* ]] && rm -f "$l"
done
rmdir /var/log/containers /var/log/pods /run/containerd/runc/k8s.io /run/containerd/runc 2>/dev/null
rm -f /var/lib/cni/results/sandboxd-kube-*
rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null

if awk -v d="$DIR/" 'index($5, d) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
	echo "kube/down: mounts are left under $DIR; not removing it" >&2
	exit 1
fi
keep=(-name logs -o -name containerd)
[[ ${SANDBOXD_KUBE_PURGE:-} == 1 ]] && keep=(-false)
if [[ -d $DIR ]]; then
	find "$DIR" -mindepth 1 -maxdepth 1 ! \( "${keep[@]}" \) -exec rm -rf --one-file-system {} +
	find "$DIR/containerd" -mindepth 1 -maxdepth 1 ! -name root ! -name imported -exec rm -rf --one-file-system {} + 2>/dev/null
	rm -rf "$DIR/containerd/root/io.containerd.grpc.v1.cri"
fi
log "done"

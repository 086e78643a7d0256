#!/usr/bin/env bash
# Brings up a one-node Kubernetes for sandboxd's tests: etcd, the control
# plane, kubelet on a containerd of its own (next to Docker's, which stays
# untouched), kube-proxy and a NetworkPolicy enforcer, all as host processes
# whose state, pid files and logs live under one directory. Running it again
# starts only what is not running. Prints the admin kubeconfig's path last.
# scripts/kube/down.sh undoes it.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${SANDBOXD_KUBE_DIR:-/var/lib/sandboxd-kube}
PREFIX=${SANDBOXD_IMAGE_PREFIX:-sandboxd}
ETCD_PORT=${SANDBOXD_KUBE_ETCD_PORT:-23790}
API_PORT=${SANDBOXD_KUBE_API_PORT:-6443}
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1
CLUSTER_CIDR=10.244.0.0/16
POD_CIDR=10.244.0.0/24
BRIDGE=skube0
PAUSE_IMAGE=registry.k8s.io/pause:3.10

started=$(date +%s.%N)
log() { awk -v t="$(date +%s.%N)" -v s="$started" -v m="$*" 'BEGIN { printf "kube/up: %5.1fs %s\n", t - s, m }' >&2; }

CACHE=${SANDBOXD_KUBE_CACHE:-$("$HERE/build.sh")}
BIN=$CACHE/bin
NODE=$(hostname | tr '[:upper:]' '[:lower:]')
NODE_IP=$(ip -4 -o route get 1.1.1.1 | sed -n 's/.* src \([0-9.]*\).*/\1/p')
[[ -n $NODE_IP ]] || { echo "kube/up: no IPv4 default route to take the node IP from" >&2; exit 1; }

PKI=$DIR/pki RUN=$DIR/run LOGS=$DIR/logs CTRD=$DIR/containerd
SOCK=$CTRD/containerd.sock
mkdir -p "$PKI" "$RUN" "$LOGS" "$CTRD" "$DIR/cni/net.d" "$DIR/kubelet"
echo "$CACHE" >"$DIR/cache"
KUBECONFIG=$DIR/admin.kubeconfig
export KUBECONFIG
kubectl() { "$BIN/kubectl" "$@"; }
ctr() { /usr/bin/ctr -a "$SOCK" -n k8s.io "$@"; }

alive() { [[ -f $RUN/$1.pid ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
# start NAME CMD... runs CMD in the background, in a session of its own so
# that the caller's signals do not reach it, unless NAME is still running.
start() {
	local name=$1
	shift
	alive "$name" && return
	setsid "$@" </dev/null >"$LOGS/$name.log" 2>&1 &
	echo $! >"$RUN/$name.pid"
}
# wait_for WHAT SECONDS CMD... retries CMD until it succeeds.
wait_for() {
	local what=$1 deadline=$(($(date +%s) + $2))
	shift 2
	until "$@" >/dev/null 2>&1; do
		if (($(date +%s) > deadline)); then
			echo "kube/up: timed out waiting for $what; logs in $LOGS" >&2
			exit 1
		fi
		sleep 0.2
	done
	log "$what"
}

# Certificates, keys and tokens, made once per state directory.
cert() { # name subject extensions
	[[ -f $PKI/$1.crt ]] && return
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$PKI/$1.key" -subj "$2" -out "$PKI/$1.csr" 2>/dev/null
	openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
		-days 3650 -extfile <(printf '%s\n' "$3") -out "$PKI/$1.crt" 2>/dev/null
	rm "$PKI/$1.csr"
}
if [[ ! -f $PKI/ca.crt ]]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
		-subj /CN=sandboxd-kube-ca -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
fi
cert apiserver /CN=kube-apiserver "subjectAltName=IP:127.0.0.1,IP:$NODE_IP,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
if [[ ! -f $PKI/sa.key ]]; then
	openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
	openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
fi
if [[ ! -f $PKI/tokens.csv ]]; then
	admin_token=$(openssl rand -hex 16)
	node_token=$(openssl rand -hex 16)
	{
		echo "$admin_token,admin,admin,system:masters"
		echo "$node_token,system:node:$NODE,node:$NODE,system:nodes"
	} >"$PKI/tokens.csv"
fi
token_of() { awk -F, -v u="$1" '$2 == u {print $1}' "$PKI/tokens.csv"; }
kubeconfig() { # file user
	cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: sandboxd-kube
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $2
  user:
    token: $(token_of "$2")
contexts:
- name: sandboxd-kube
  context: {cluster: sandboxd-kube, user: $2}
current-context: sandboxd-kube
EOF
	chmod 600 "$1"
}
kubeconfig "$KUBECONFIG" admin
kubeconfig "$DIR/kubelet.kubeconfig" "system:node:$NODE"

# kubelet changes these at start; down.sh puts the host's values back.
if [[ ! -f $DIR/sysctl.saved ]]; then
	for k in vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops \
		kernel.keys.root_maxkeys kernel.keys.root_maxbytes; do
		echo "$k=$(sysctl -n "$k")"
	done >"$DIR/sysctl.saved"
fi

# containerd: a second instance with CRI, everything under $CTRD. runc's
# root and the pods' network namespaces are moved there too, away from
# /run/containerd/runc and /var/run/netns.
cat >"$CTRD/config.toml" <<EOF
version = 2
root = "$CTRD/root"
state = "$CTRD/state"
[grpc]
  address = "$SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$CTRD/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CACHE/cni"
    conf_dir = "$DIR/cni/net.d"
EOF
# The firewall plugin lets pod traffic through Docker's FORWARD policy of
# DROP, which bridged packets meet because of br_netfilter.
cat >"$DIR/cni/net.d/10-sandboxd-kube.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "sandboxd-kube",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$DIR/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "firewall", "backend": "iptables"}
  ]
}
EOF
start containerd /usr/bin/containerd --config "$CTRD/config.toml"

start etcd "$BIN/etcd" --name default --data-dir "$DIR/etcd" \
	--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
	--listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" \
	--initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" \
	--initial-cluster "default=http://127.0.0.1:$((ETCD_PORT + 10))" \
	--unsafe-no-fsync

start kube-apiserver "$BIN/kube-apiserver" \
	--etcd-servers "http://127.0.0.1:$ETCD_PORT" \
	--bind-address 0.0.0.0 --secure-port "$API_PORT" --advertise-address "$NODE_IP" \
	--tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
	--client-ca-file "$PKI/ca.crt" --token-auth-file "$PKI/tokens.csv" \
	--authorization-mode Node,RBAC --allow-privileged \
	--service-cluster-ip-range "$SERVICE_CIDR" \
	--service-account-issuer https://kubernetes.default.svc.cluster.local \
	--service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
	--kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
	--kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
	--kubelet-preferred-address-types InternalIP \
	--profiling=false

# Images: the pause image is built once into Docker's store and, like every
# $PREFIX/* image, imported into this containerd once per image ID.
wait_for containerd 20 ctr version
pause_sum=$(sha256sum "$BIN/pause" | cut -c1-16)
if [[ $(docker image inspect -f '{{index .Config.Labels "sandboxd.pause"}}' "$PAUSE_IMAGE" 2>/dev/null) != "$pause_sum" ]]; then
	ctx=$(mktemp -d)
	cp "$BIN/pause" "$ctx/pause"
	printf 'FROM scratch\nLABEL sandboxd.pause=%s\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' "$pause_sum" >"$ctx/Dockerfile"
	out=$(docker build -q -t "$PAUSE_IMAGE" "$ctx" 2>&1) || { echo "$out" >&2; exit 1; }
	rm -rf "$ctx"
fi
touch "$CTRD/imported"
docker images --format '{{.Repository}}:{{.Tag}} {{.ID}}' |
	awk -v p="$PREFIX/" -v pause="$PAUSE_IMAGE" 'index($1, p) == 1 && $1 !~ /<none>/ || $1 == pause' |
	while read -r name id; do
		grep -qxF "$id $name" "$CTRD/imported" && continue
		docker save "$name" | ctr images import - >/dev/null
		echo "$id $name" >>"$CTRD/imported"
		log "imported $name"
	done

wait_for kube-apiserver 60 curl -sf --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(token_of admin)" \
	"https://127.0.0.1:$API_PORT/readyz"

cat >"$DIR/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$SOCK
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
makeIPTablesUtilChains: false
# Kubernetes has no per-pod process limit of its own: a fork bomb in a
# context stops here, as at the Docker platform's --pids.
podPidsLimit: 256
podLogsDir: $DIR/pod-logs
address: $NODE_IP
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
# Test images are imported, never pulled: keep image GC and eviction away.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 50Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
EOF
start kubelet "$BIN/kubelet" --config "$DIR/kubelet/config.yaml" \
	--kubeconfig "$DIR/kubelet.kubeconfig" --root-dir "$DIR/kubelet/root" --cert-dir "$DIR/kubelet/pki" \
	--hostname-override "$NODE" --node-ip "$NODE_IP"

start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$KUBECONFIG" \
	--authentication-kubeconfig "$KUBECONFIG" --authorization-kubeconfig "$KUBECONFIG" \
	--leader-elect=false --bind-address 127.0.0.1

start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$KUBECONFIG" \
	--authentication-kubeconfig "$KUBECONFIG" --authorization-kubeconfig "$KUBECONFIG" \
	--leader-elect=false --bind-address 127.0.0.1 \
	--service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
	--use-service-account-credentials \
	--cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
	--service-cluster-ip-range "$SERVICE_CIDR" \
	--allocate-node-cidrs --cluster-cidr "$CLUSTER_CIDR" --node-cidr-mask-size 24

cat >"$DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: {kubeconfig: $KUBECONFIG}
hostnameOverride: $NODE
clusterCIDR: $CLUSTER_CIDR
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
# Zeros leave the host's conntrack settings alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
start kube-proxy "$BIN/kube-proxy" --config "$DIR/kube-proxy.yaml"

# kube-router runs only its NetworkPolicy firewall; it finds ipset on PATH.
mkdir -p "$DIR/bin"
cat >"$DIR/bin/ipset" <<EOF
#!/bin/sh
LD_LIBRARY_PATH=$CACHE/ipset/usr/lib/x86_64-linux-gnu exec $CACHE/ipset/usr/sbin/ipset "\$@"
EOF
chmod +x "$DIR/bin/ipset"

node_ready() { kubectl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True; }
wait_for "node Ready" 60 node_ready
# After the node is: kube-router looks it up at start, and dies when it is
# not there yet. With --health-port 0, v2.1.0 dies too, on a nil health
# controller; either way nothing would enforce NetworkPolicy.
start kube-router env PATH="$DIR/bin:$PATH" "$BIN/kube-router" --kubeconfig "$KUBECONFIG" \
	--run-firewall=true --run-router=false --run-service-proxy=false \
	--hostname-override "$NODE" --service-cluster-ip-range "$SERVICE_CIDR" \
	--metrics-port 0 --health-port 20244
wait_for "default ServiceAccount" 60 kubectl -n default get serviceaccount default
alive kube-router || { echo "kube/up: kube-router died: $LOGS/kube-router.log" >&2; tail -5 "$LOGS/kube-router.log" >&2; exit 1; }

smoke=$(kubectl create -o name -f - <<EOF
apiVersion: v1
kind: Pod
metadata: {generateName: smoke-, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: pause, image: $PAUSE_IMAGE, imagePullPolicy: Never}
EOF
)
wait_for "smoke pod Ready" 60 kubectl -n default wait --for=condition=Ready "$smoke" --timeout=1s
wait_for "smoke pod exec" 10 kubectl -n default exec "$smoke" -- /pause -v
kubectl -n default delete "$smoke" --wait=false >/dev/null
echo "$KUBECONFIG"

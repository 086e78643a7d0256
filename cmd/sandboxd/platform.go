package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/egress"
	"github.com/sandboxd/sandboxd/internal/httpapi"
	"github.com/sandboxd/sandboxd/internal/kubernetes"
)

// platform is the runtime contexts run on, with what the daemon does with
// it besides running contexts.
type platform interface {
	contexts.Runtime
	// AfterRecover cleans up what a previous run left that recovery did
	// not take over.
	AfterRecover(ctx context.Context) error
	// Replicas lets other replicas of the daemon serve this one's
	// contexts, and this one theirs; nil where the platform has no
	// replicas. advertise is the URL the others reach this one at.
	Replicas(ctx context.Context, adopter kubernetes.Adopter, advertise string) (replicaSet, error)
	Close() error
}

// replicaSet is what replicas of the daemon serving the same contexts
// share: who drives which context, and who lives.
type replicaSet interface {
	httpapi.Placement
	// Renew says that this replica lives: before Recover, so that no
	// other takes its contexts over meanwhile.
	Renew(ctx context.Context) error
	// Start keeps saying so, and takes over the contexts of dead replicas.
	Start()
	// Close stops renewing and taking over, and keeps the Lease.
	Close()
	// Leave tells the others to take over at once: once the Manager let
	// its contexts go.
	Leave() error
}

// newPlatform makes the runtime --platform names.
func newPlatform(ctx context.Context, cfg config, log *slog.Logger) (platform, error) {
	if cfg.Platform == "kubernetes" {
		return newKubeRuntime(ctx, cfg, log)
	}
	rt, err := newDockerRuntime(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	return dockerPlatform{rt}, nil
}

// kubeConfig is what the --kube-* flags say.
type kubeConfig struct {
	Kubeconfig     string
	Namespace      string
	Replica        string
	Advertise      string
	Transport      string
	RuntimeClass   string
	PullPolicy     string
	ActiveDeadline time.Duration
	DaemonSelector string
	DaemonCIDRs    string
	EgressAddress  string
	// UnenforcedNetwork runs contexts even where the cluster does not
	// enforce their NetworkPolicy.
	UnenforcedNetwork bool
}

func (k *kubeConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&k.Kubeconfig, "kubeconfig", "", "kubeconfig file of the cluster contexts run in (--platform kubernetes); empty is the config of the pod sandboxd runs in")
	fs.StringVar(&k.Namespace, "kube-namespace", "", "namespace of the contexts' pods; empty is the kubeconfig's, or sandboxd's own pod's")
	fs.StringVar(&k.Replica, "kube-replica", "", "name of this replica of sandboxd: the pods it drives carry it; empty is $POD_NAME, or the host name")
	fs.StringVar(&k.Advertise, "kube-advertise", "", "URL the other replicas of sandboxd reach this one at, to pass on requests for the contexts it drives; empty is http://$POD_IP:<port of --listen>, or the --listen address")
	fs.StringVar(&k.Transport, "kube-transport", kubernetes.TransportIP, "how sandboxd reaches a pod's Jupyter server: ip (the pod's address: in the cluster, or on a node) or exec (a relay over the API server's exec, where pods' addresses cannot be reached)")
	fs.StringVar(&k.RuntimeClass, "kube-runtime-class", "", "runtimeClassName of the contexts' pods (gVisor, Kata); empty is the cluster's default")
	fs.StringVar(&k.PullPolicy, "kube-pull-policy", string(corev1.PullIfNotPresent), "imagePullPolicy of the contexts' pods: Always, IfNotPresent or Never")
	fs.DurationVar(&k.ActiveDeadline, "kube-active-deadline", 24*time.Hour, "activeDeadlineSeconds of the contexts' pods: the cluster ends a pod this old whatever sandboxd does; 0 is none")
	fs.StringVar(&k.DaemonSelector, "kube-daemon-selector", "app.kubernetes.io/name=sandboxd", "labels of sandboxd's own pods, as name=value,...: the only pods that contexts' pods take connections from")
	fs.StringVar(&k.EgressAddress, "kube-egress-address", "", `address of sandboxd's that contexts' pods reach its egress proxy at (--allow-egress); empty is $POD_IP`)
	fs.StringVar(&k.DaemonCIDRs, "kube-daemon-cidrs", "", "addresses that contexts' pods take connections from besides sandboxd's pods, as CIDR ranges, comma-separated: where sandboxd runs outside the cluster")
	fs.BoolVar(&k.UnenforcedNetwork, "kube-unenforced-network", false, "start even when the cluster does not enforce NetworkPolicy, which sandboxd checks at start with a canary pod: contexts' code can then reach the pod network, the node and the API server; for trusted code only")
}

// newKubeRuntime connects to the cluster --kubeconfig names.
func newKubeRuntime(ctx context.Context, cfg config, log *slog.Logger) (*kubePlatform, error) {
	k := cfg.Kube
	replica := k.Replica
	if replica == "" {
		replica = os.Getenv("POD_NAME")
	}
	if replica == "" {
		replica, _ = os.Hostname()
	}
	selector, err := parseLabels(k.DaemonSelector)
	if err != nil {
		return nil, fmt.Errorf("--kube-daemon-selector: %w", err)
	}
	var cidrs []string
	for _, c := range strings.Split(k.DaemonCIDRs, ",") {
		if c = strings.TrimSpace(c); c != "" {
			cidrs = append(cidrs, c)
		}
	}
	var egressProxy *egress.Proxy
	egressAddress := k.EgressAddress
	if cfg.AllowEgress {
		egressProxy = &egress.Proxy{Logger: log, Ports: cfg.EgressPorts, MaxConns: cfg.EgressMaxConns, Deny: func() []netip.Prefix { return cfg.EgressDeny }}
		if egressAddress == "" {
			egressAddress = os.Getenv("POD_IP")
		}
		if egressAddress == "" {
			return nil, errors.New("--allow-egress on Kubernetes needs --kube-egress-address, or $POD_IP in a pod")
		}
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rt, err := kubernetes.New(cctx, kubernetes.Config{
		Kubeconfig:     k.Kubeconfig,
		Namespace:      k.Namespace,
		Owner:          cfg.Name,
		Replica:        replica,
		Transport:      k.Transport,
		RuntimeClass:   k.RuntimeClass,
		PullPolicy:     corev1.PullPolicy(k.PullPolicy),
		ActiveDeadline: k.ActiveDeadline,
		DaemonSelector: selector,
		DaemonCIDRs:    cidrs,
		Egress:         egressProxy,
		EgressAddress:  egressAddress,
		Limits: kubernetes.Limits{
			Memory:        int64(cfg.Memory),
			CPUs:          cfg.CPUs,
			TmpSize:       int64(cfg.TmpSize),
			WorkspaceSize: kubeWorkspaceSize(cfg.WorkspaceSize),
		},
		Log: log,
	})
	if err != nil {
		return nil, err
	}
	if err := checkNetworkPolicy(cctx, rt, cfg.Image, k.UnenforcedNetwork, log); err != nil {
		rt.Close()
		return nil, err
	}
	log.Info("contexts run as pods", "namespace", rt.Namespace(), "replica", replica, "transport", k.Transport)
	return &kubePlatform{rt}, nil
}

// checkNetworkPolicy refuses a cluster where contexts' NetworkPolicy is
// not enforced, unless unenforced allows it: then it says so loudly.
func checkNetworkPolicy(ctx context.Context, rt *kubernetes.Runtime, image string, unenforced bool, log *slog.Logger) error {
	start := time.Now()
	err := rt.CheckNetworkPolicy(ctx, image)
	switch {
	case err == nil:
		log.Info("the cluster enforces contexts' NetworkPolicy", "took", time.Since(start).Round(time.Millisecond))
		return nil
	case unenforced:
		log.Error("contexts' NetworkPolicy is NOT enforced: their code can reach the network, the node and the API server; running anyway because of --kube-unenforced-network", "error", err)
		return nil
	case errors.Is(err, kubernetes.ErrNetworkNotEnforced):
		return fmt.Errorf("refusing to run contexts: %w. Install a network plugin or NetworkPolicy controller that enforces egress rules (Calico, Cilium, kube-router, kube-network-policies), or pass --kube-unenforced-network to run anyway", err)
	}
	return fmt.Errorf("could not check that the cluster enforces contexts' NetworkPolicy: %w (pass --kube-unenforced-network to start without the check passing)", err)
}

// kubeWorkspaceSize is the size limit of a context's /workspace: auto is
// autoWorkspaceSize, since a pod's emptyDir can always be sized.
func kubeWorkspaceSize(size workspaceSize) int64 {
	if size < 0 {
		return autoWorkspaceSize
	}
	return int64(size)
}

// parseLabels reads name=value,...
func parseLabels(s string) (map[string]string, error) {
	labels := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not name=value", part)
		}
		labels[k] = v
	}
	return labels, nil
}

type kubePlatform struct{ *kubernetes.Runtime }

func (*kubePlatform) AfterRecover(context.Context) error { return nil }

func (p *kubePlatform) Replicas(ctx context.Context, adopter kubernetes.Adopter, advertise string) (replicaSet, error) {
	return kubernetes.NewReplicas(ctx, p.Runtime, advertise, adopter)
}

// advertiseURL is the URL other replicas reach this one at: --kube-advertise,
// or the pod's address with the port the daemon listens on.
func advertiseURL(cfg config, getenv func(string) string, addr net.Addr) string {
	if cfg.Kube.Advertise != "" {
		return cfg.Kube.Advertise
	}
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := getenv("POD_IP"); ip != "" {
		host = ip
	}
	return "http://" + net.JoinHostPort(host, port)
}

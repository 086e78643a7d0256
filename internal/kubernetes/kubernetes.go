// Package kubernetes runs contexts as pods of a Kubernetes cluster, one pod
// per context. It is the only package that imports client-go.
//
// All that a context is lives in the cluster, so that any replica of the
// daemon can take it over: the pod (its labels say whose it is and which
// replica drives it), a Secret with its server's token and its record, and
// a NetworkPolicy that shuts it in.
package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/egress"
)

// Labels every object of ours carries. The sandboxd. prefix is ours.
const (
	labelOwner     = "sandboxd.owner"
	labelReplica   = "sandboxd.replica"
	labelContextID = "sandboxd.context_id"
)

var klogOnce sync.Once

// jupyterPort is where a pod's Jupyter server listens, on the pod's
// address.
const jupyterPort = 8888

// Transports: how the daemon reaches a pod's server.
const (
	// TransportIP dials the pod's address: for a daemon in the cluster, or
	// on a node.
	TransportIP = "ip"
	// TransportExec relays through an exec in the pod: for a daemon that
	// cannot reach pods' addresses.
	TransportExec = "exec"
)

// Limits are the resources of every context's pod.
type Limits struct {
	Memory        int64   // bytes
	CPUs          float64 // cores
	TmpSize       int64   // bytes of the /tmp emptyDir, in memory; it counts against Memory
	WorkspaceSize int64   // bytes of the /workspace emptyDir, on the node's disk
}

// Config says where and how pods are made.
type Config struct {
	// Kubeconfig is the file to reach the cluster with; "" uses the
	// in-cluster config of the daemon's own pod.
	Kubeconfig string
	// Namespace holds the pods; "" is the daemon's own, or default.
	Namespace string
	// Owner names the daemon, so that several can share a namespace and
	// each finds only its own pods. Every replica of one daemon has the
	// same Owner.
	Owner string
	// Replica names this replica: the pods it drives carry it.
	Replica string
	// Transport is TransportIP ("" too) or TransportExec.
	Transport string
	// RuntimeClass, when set, is the pods' runtimeClassName (gVisor, Kata).
	RuntimeClass string
	// PullPolicy is the pods' imagePullPolicy; "" is IfNotPresent.
	PullPolicy corev1.PullPolicy
	// ActiveDeadline bounds a pod's life whatever the daemon does.
	ActiveDeadline time.Duration
	// DaemonSelector are the labels of the daemon's own pods, the only
	// ones a context's pod takes connections from.
	DaemonSelector map[string]string
	// DaemonCIDRs are addresses the daemon connects to pods from when it
	// does not run in a pod of the cluster (on a node, say).
	DaemonCIDRs []string
	// Egress serves the contexts that ask for networking; nil refuses
	// them. Pods reach it at EgressAddress, an address of the daemon's.
	Egress        *egress.Proxy
	EgressAddress string
	Limits        Limits
	Log           *slog.Logger // nil: discard
}

// Runtime runs contexts as pods.
type Runtime struct {
	cfg  Config
	rest *rest.Config
	cs   kubernetes.Interface
	log  *slog.Logger

	pods     corelisters.PodNamespaceLister
	factory  informers.SharedInformerFactory
	stop     chan struct{}
	watchMu  sync.Mutex
	watchers map[string]func(exit string) // by pod name: who waits for its end
	calls    sync.WaitGroup               // of watchers being called

	egressMu sync.Mutex
	egress   map[string]net.Listener // by context id: where its proxy is served
}

var _ contexts.Runtime = (*Runtime)(nil)

// New connects to the cluster and starts watching the daemon's pods.
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	restCfg, ns, err := restConfig(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	if cfg.Namespace == "" {
		cfg.Namespace = ns
	}
	switch cfg.Transport {
	case "":
		cfg.Transport = TransportIP
	case TransportIP, TransportExec:
	default:
		return nil, fmt.Errorf("kubernetes transport %q is neither ip nor exec", cfg.Transport)
	}
	if cfg.Egress != nil && net.ParseIP(cfg.EgressAddress) == nil {
		return nil, fmt.Errorf("egress needs the address pods reach the daemon at, not %q", cfg.EgressAddress)
	}
	if cfg.PullPolicy == "" {
		cfg.PullPolicy = corev1.PullIfNotPresent
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	// client-go logs through klog, straight to stderr unless told: into
	// the daemon's log instead. klog's logger is global, and informers read
	// it as they run: it is set once.
	klogOnce.Do(func() { klog.SetSlogLogger(cfg.Log.With("component", "client-go")) })
	// The daemon's own requests come in bursts (a pool filling, a
	// recovery): client-go's default of 5 per second would throttle them.
	restCfg.QPS, restCfg.Burst = 200, 400
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	r := &Runtime{cfg: cfg, rest: restCfg, cs: cs, log: cfg.Log, stop: make(chan struct{}), watchers: map[string]func(string){}, egress: map[string]net.Listener{}}
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0,
		informers.WithNamespace(cfg.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = labelOwner + "=" + cfg.Owner }))
	podInformer := factory.Core().V1().Pods()
	podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.podChanged(obj) },
		UpdateFunc: func(_, obj any) { r.podChanged(obj) },
		DeleteFunc: r.podDeleted,
	})
	r.pods = podInformer.Lister().Pods(cfg.Namespace)
	r.factory = factory
	factory.Start(r.stop)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), podInformer.Informer().HasSynced) {
		close(r.stop)
		return nil, unavailable(fmt.Errorf("list pods in namespace %s: %w", cfg.Namespace, sctx.Err()), "watch pods")
	}
	return r, nil
}

// restConfig reads kubeconfig, or the pod's own config when it is "", and
// returns it with the namespace it names.
func restConfig(kubeconfig string) (*rest.Config, string, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, "", fmt.Errorf("kubernetes: no --kubeconfig and not in a pod: %w", err)
		}
		ns := "default"
		if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
			ns = strings.TrimSpace(string(b))
		}
		return cfg, ns, nil
	}
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}, &clientcmd.ConfigOverrides{})
	cfg, err := loader.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	ns, _, err := loader.Namespace()
	if err != nil || ns == "" {
		ns = "default"
	}
	return cfg, ns, nil
}

// Close stops watching pods. Nothing is called after it returns.
func (r *Runtime) Close() error {
	r.egressMu.Lock()
	for id, l := range r.egress {
		l.Close()
		delete(r.egress, id)
	}
	r.egressMu.Unlock()
	r.watchMu.Lock()
	close(r.stop)
	clear(r.watchers)
	r.watchMu.Unlock()
	r.factory.Shutdown()
	r.calls.Wait()
	return nil
}

// Namespace is where the pods are.
func (r *Runtime) Namespace() string { return r.cfg.Namespace }

// Ping checks that the API server answers.
func (r *Runtime) Ping(ctx context.Context) error {
	_, err := r.cs.CoreV1().Pods(r.cfg.Namespace).List(ctx, metav1.ListOptions{Limit: 1, LabelSelector: labelOwner + "=" + r.cfg.Owner})
	return unavailable(err, "list pods")
}

// HasImage says yes: which images a node holds is the kubelet's to know,
// and a pod whose image cannot be had ends at once (see podEnded).
func (r *Runtime) HasImage(context.Context, string) (bool, error) { return true, nil }

func podName(contextID string) string { return "sandboxd-" + contextID }

// Start makes the context's Secret, NetworkPolicy and pod, and returns
// without waiting for the pod to run: the Manager waits for its server.
func (r *Runtime) Start(ctx context.Context, spec contexts.Spec) (contexts.Instance, error) {
	labels := map[string]string{
		labelOwner:     r.cfg.Owner,
		labelReplica:   r.cfg.Replica,
		labelContextID: spec.ContextID,
	}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	inst := contexts.Instance{ContextID: spec.ContextID, ID: podName(spec.ContextID), Labels: labels}
	ns := r.cfg.Namespace
	// The Secret first: the pod's server reads its token from it.
	if _, err := r.cs.CoreV1().Secrets(ns).Create(ctx, r.secret(spec, labels), metav1.CreateOptions{}); err != nil {
		return contexts.Instance{}, unavailable(err, "create secret")
	}
	if _, err := r.cs.NetworkingV1().NetworkPolicies(ns).Create(ctx, r.policy(spec.ContextID, labels, nil), metav1.CreateOptions{}); err != nil {
		r.Remove(context.WithoutCancel(ctx), inst)
		return contexts.Instance{}, unavailable(err, "create network policy")
	}
	pod, err := r.cs.CoreV1().Pods(ns).Create(ctx, r.pod(spec, labels), metav1.CreateOptions{})
	if err != nil {
		r.Remove(context.WithoutCancel(ctx), inst)
		return contexts.Instance{}, unavailable(err, "create pod")
	}
	r.ownedByPod(ctx, pod)
	return inst, nil
}

// ownedByPod makes the pod the owner of its Secret and NetworkPolicy, so
// that the cluster deletes them with it, whoever deletes it and whether or
// not a replica is left to.
func (r *Runtime) ownedByPod(ctx context.Context, pod *corev1.Pod) {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": []metav1.OwnerReference{{
		APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID,
	}}}})
	if err != nil {
		return
	}
	ns := r.cfg.Namespace
	_, serr := r.cs.CoreV1().Secrets(ns).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	_, perr := r.cs.NetworkingV1().NetworkPolicies(ns).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err := errors.Join(serr, perr); err != nil {
		// Remove still deletes them.
		r.log.Warn("cannot make a context's pod own its secret and network policy", "pod", pod.Name, "error", err)
	}
}

// Remove deletes the pod, its Secret and its NetworkPolicy; what is
// already gone counts as removed.
func (r *Runtime) Remove(ctx context.Context, inst contexts.Instance) error {
	r.closeEgress(inst.ContextID)
	name := podName(inst.ContextID)
	ns := r.cfg.Namespace
	now := metav1.DeleteOptions{GracePeriodSeconds: new(int64)}
	return errors.Join(
		ignoreNotFound(r.cs.CoreV1().Pods(ns).Delete(ctx, name, now), "delete pod "+name),
		ignoreNotFound(r.cs.CoreV1().Secrets(ns).Delete(ctx, name, metav1.DeleteOptions{}), "delete secret "+name),
		ignoreNotFound(r.cs.NetworkingV1().NetworkPolicies(ns).Delete(ctx, name, metav1.DeleteOptions{}), "delete network policy "+name),
	)
}

// List returns the pods this replica drives, running or not; the
// canary's are not contexts.
func (r *Runtime) List(ctx context.Context) ([]contexts.Instance, error) {
	pods, err := r.cs.CoreV1().Pods(r.cfg.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labelOwner + "=" + r.cfg.Owner + "," + labelReplica + "=" + r.cfg.Replica + ",!" + labelCanary,
	})
	if err != nil {
		return nil, unavailable(err, "list pods")
	}
	insts := make([]contexts.Instance, 0, len(pods.Items))
	for _, p := range pods.Items {
		_, ended := podEnded(&p)
		insts = append(insts, contexts.Instance{
			ContextID: p.Labels[labelContextID],
			ID:        p.Name,
			Labels:    p.Labels,
			Running:   !ended,
		})
	}
	return insts, nil
}

// Dial connects to the pod's server.
func (r *Runtime) Dial(ctx context.Context, inst contexts.Instance) (net.Conn, error) {
	if r.cfg.Transport == TransportExec {
		return r.dialExec(ctx, inst)
	}
	pod, err := r.pods.Get(podName(inst.ContextID))
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", podName(inst.ContextID), err)
	}
	if pod.Status.PodIP == "" {
		return nil, fmt.Errorf("pod %s has no address yet", pod.Name)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", net.JoinHostPort(pod.Status.PodIP, fmt.Sprint(jupyterPort)))
}

// ignoreNotFound names the operation of err, unless err says that what it
// acted on is gone.
func ignoreNotFound(err error, op string) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return unavailable(err, op)
}

// unavailable names the operation and marks an API server that cannot be
// reached with CodeRuntimeUnavailable.
func unavailable(err error, op string) error {
	if err == nil {
		return nil
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) || apierrors.IsServiceUnavailable(err) ||
		apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || apierrors.IsTooManyRequests(err) {
		return &contexts.Error{Code: contexts.CodeRuntimeUnavailable, Message: "the Kubernetes API server cannot be reached", Err: fmt.Errorf("%s: %w", op, err)}
	}
	return fmt.Errorf("%s: %w", op, err)
}

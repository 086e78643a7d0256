package kubernetes

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// A NetworkPolicy that nothing enforces does nothing, and the API server
// takes it all the same. So before any context runs, a canary proves that
// the cluster enforces the policy contexts get: a probe pod under exactly
// that policy tries to connect to a listener pod that nothing shuts in, to
// its node and to the API server, and must reach none of them.

// labelCanary marks the canary's pods and policies with their role, so
// that a daemon that died during a check has them removed on its next
// start, and so that List leaves them out.
const labelCanary = "sandboxd.canary"

// isCanary reports whether pod is a canary's, not a context's.
func isCanary(pod *corev1.Pod) bool {
	_, ok := pod.Labels[labelCanary]
	return ok
}

// ErrNetworkNotEnforced says that a pod under a context's NetworkPolicy
// reached what the policy forbids.
var ErrNetworkNotEnforced = errors.New("the cluster does not enforce NetworkPolicy")

// canaryEnforceWithin is how long the probe keeps trying: an enforcer
// programs a new pod's rules a moment after the pod starts, and a
// connection made before then proves nothing.
const canaryEnforceWithin = 15 * time.Second

// canaryProbe connects to each target (host:port) at once, in rounds,
// until a round reaches none (exit 0) or the time given runs out (exit 3,
// naming what it reached). It tries the node's kubelet and API server
// ports and the API server's service as well: pods are often let through
// to their own node.
const canaryProbe = `import os, socket, sys, time
from concurrent.futures import ThreadPoolExecutor
targets = sys.argv[2:] + [os.environ['HOST_IP'] + ':10250', os.environ['HOST_IP'] + ':6443']
if os.environ.get('KUBERNETES_SERVICE_HOST'):
    targets.append(os.environ['KUBERNETES_SERVICE_HOST'] + ':' + os.environ.get('KUBERNETES_SERVICE_PORT', '443'))
def reached(target):
    host, port = target.rsplit(':', 1)
    try:
        socket.create_connection((host.strip('[]'), int(port)), timeout=1).close()
        return True
    except OSError:
        return False
deadline = time.monotonic() + float(sys.argv[1])
with ThreadPoolExecutor(len(targets)) as pool:
    while True:
        got = [t for t, ok in zip(targets, pool.map(reached, targets)) if ok]
        if not got:
            sys.exit(0)
        if time.monotonic() > deadline:
            print(' '.join(got))
            sys.exit(3)
        time.sleep(0.2)
`

// CheckNetworkPolicy runs the canary with image, which must have python3:
// it returns an error wrapping ErrNetworkNotEnforced when the probe got
// through, and another error when the check could not be made.
func (r *Runtime) CheckNetworkPolicy(ctx context.Context, image string) error {
	return r.checkPolicy(ctx, image, nil)
}

// checkPolicy runs the canary with the policy a context with egress gets.
func (r *Runtime) checkPolicy(ctx context.Context, image string, egress []networkingv1.NetworkPolicyEgressRule) (err error) {
	if err := r.removeCanaries(ctx); err != nil {
		return err
	}
	id := "canary-" + strings.ToLower(rand.Text()[:10])
	listener := contexts.Instance{ContextID: id + "-listener"}
	probe := contexts.Instance{ContextID: id + "-probe"}
	defer func() {
		// Also when ctx has ended: the pods must not outlive the check.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), apiTimeout)
		defer cancel()
		err = errors.Join(err, r.Remove(cctx, listener), r.Remove(cctx, probe))
	}()

	ns := r.cfg.Namespace
	pods, policies := r.cs.CoreV1().Pods(ns), r.cs.NetworkingV1().NetworkPolicies(ns)
	// The probe's policy first, so that the enforcer has it before the
	// probe starts.
	if _, err := policies.Create(ctx, r.policy(probe.ContextID, r.canaryLabels(probe.ContextID, "probe"), egress), metav1.CreateOptions{}); err != nil {
		return unavailable(err, "create the canary's network policy")
	}
	if _, err := policies.Create(ctx, r.openPolicy(listener.ContextID), metav1.CreateOptions{}); err != nil {
		return unavailable(err, "create the canary listener's network policy")
	}
	if _, err := pods.Create(ctx, r.canaryListener(listener.ContextID, image), metav1.CreateOptions{}); err != nil {
		return unavailable(err, "create the canary listener")
	}
	// Only a listener that answers the daemon tells blocked from down.
	addr, err := r.waitListening(ctx, listener)
	if err != nil {
		return fmt.Errorf("the canary listener %s: %w", podName(listener.ContextID), err)
	}

	ended := make(chan string, 1)
	r.Watch(probe, func(exit string) { ended <- exit })
	defer r.unwatch(podName(probe.ContextID))
	if _, err := pods.Create(ctx, r.canaryProber(probe.ContextID, image, addr), metav1.CreateOptions{}); err != nil {
		return unavailable(err, "create the canary probe")
	}
	var exit string
	select {
	case exit = <-ended:
	case <-ctx.Done():
		return fmt.Errorf("the canary probe %s did not end: %w", podName(probe.ContextID), ctx.Err())
	}
	pod, err := r.pods.Get(podName(probe.ContextID))
	if err != nil || len(pod.Status.ContainerStatuses) == 0 || pod.Status.ContainerStatuses[0].State.Terminated == nil {
		return fmt.Errorf("the canary probe %s %s", podName(probe.ContextID), exit)
	}
	end := pod.Status.ContainerStatuses[0].State.Terminated
	switch end.ExitCode {
	case 0:
		return nil
	case 3:
		return fmt.Errorf("%w: a pod under a context's NetworkPolicy in namespace %s connected to %s, which the policy forbids",
			ErrNetworkNotEnforced, ns, strings.TrimSpace(end.Message))
	}
	return fmt.Errorf("the canary probe %s %s: %s", podName(probe.ContextID), exit, strings.TrimSpace(end.Message))
}

// waitListening waits until the daemon reaches the listener, and returns
// the listener's address as the probe dials it.
func (r *Runtime) waitListening(ctx context.Context, listener contexts.Instance) (string, error) {
	name := podName(listener.ContextID)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var err error
	for {
		pod, gerr := r.pods.Get(name)
		if gerr == nil {
			if exit, ended := podEnded(pod); ended {
				return "", errors.New(exit)
			}
			var conn net.Conn
			if conn, err = r.Dial(ctx, listener); err == nil {
				conn.Close()
				return fmt.Sprintf("%s:%d", pod.Status.PodIP, jupyterPort), nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("not reached: %w (last: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// removeCanaries deletes what checks of this replica left: a daemon that
// died during one leaves its pods and policies.
func (r *Runtime) removeCanaries(ctx context.Context) error {
	opts := metav1.ListOptions{LabelSelector: labelOwner + "=" + r.cfg.Owner + "," + labelReplica + "=" + r.cfg.Replica + "," + labelCanary}
	ns := r.cfg.Namespace
	pods, err := r.cs.CoreV1().Pods(ns).List(ctx, opts)
	if err != nil {
		return unavailable(err, "list canary pods")
	}
	policies, err := r.cs.NetworkingV1().NetworkPolicies(ns).List(ctx, opts)
	if err != nil {
		return unavailable(err, "list canary network policies")
	}
	now := metav1.DeleteOptions{GracePeriodSeconds: new(int64)}
	var errs []error
	for _, p := range pods.Items {
		errs = append(errs, ignoreNotFound(r.cs.CoreV1().Pods(ns).Delete(ctx, p.Name, now), "delete pod "+p.Name))
	}
	for _, p := range policies.Items {
		errs = append(errs, ignoreNotFound(r.cs.NetworkingV1().NetworkPolicies(ns).Delete(ctx, p.Name, metav1.DeleteOptions{}), "delete network policy "+p.Name))
	}
	return errors.Join(errs...)
}

// unwatch forgets the watcher of the pod name, if it was not called.
func (r *Runtime) unwatch(name string) {
	r.watchMu.Lock()
	delete(r.watchers, name)
	r.watchMu.Unlock()
}

func (r *Runtime) canaryLabels(id, role string) map[string]string {
	return map[string]string{labelOwner: r.cfg.Owner, labelReplica: r.cfg.Replica, labelContextID: id, labelCanary: role}
}

// canaryPod is a context's pod as r.pod makes it, running cmd, without
// the Secret a context's server reads, and ended by the cluster if the
// daemon forgets it.
func (r *Runtime) canaryPod(id, role, image string, cmd []string) *corev1.Pod {
	p := r.pod(contexts.Spec{ContextID: id, Image: image, Cmd: cmd}, r.canaryLabels(id, role))
	deadline := int64(2 * time.Minute / time.Second)
	p.Spec.ActiveDeadlineSeconds = &deadline
	c := &p.Spec.Containers[0]
	c.Env = nil
	c.TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
	return p
}

// canaryListener serves on a context's port, where the daemon and the
// probe dial it.
func (r *Runtime) canaryListener(id, image string) *corev1.Pod {
	return r.canaryPod(id, "listener", image, []string{"python3", "-m", "http.server", "--bind", "0.0.0.0", fmt.Sprint(jupyterPort)})
}

// canaryProber runs canaryProbe against the listener at addr.
func (r *Runtime) canaryProber(id, image, addr string) *corev1.Pod {
	p := r.canaryPod(id, "probe", image, []string{"python3", "-c", canaryProbe, fmt.Sprint(canaryEnforceWithin.Seconds()), addr})
	p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "HOST_IP", ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}}}}
	return p
}

// openPolicy lets anything connect to the listener, whatever other
// policies of the namespace say: the probe must be stopped by its own
// policy, not by the listener's.
func (r *Runtime) openPolicy(id string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: r.meta(id, r.canaryLabels(id, "listener")),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{labelOwner: r.cfg.Owner, labelContextID: id}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{}},
		},
	}
}

package kubernetes

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// The probe is what a context gets: the same pod, locked down alike, under
// the same policy, with only its command, env and labels its own.
func TestCanaryIsAContext(t *testing.T) {
	r := &Runtime{cfg: Config{Namespace: "ns", Owner: "o", Replica: "r", DaemonCIDRs: []string{"10.0.0.1/32"}, Limits: Limits{Memory: 1 << 30, CPUs: 1}}}
	probe := r.canaryProber("canary-x-probe", "img", "10.244.0.9:8888")
	contextPod := r.pod(contexts.Spec{ContextID: "canary-x-probe", Image: "img"}, probe.Labels)
	pc, cc := probe.Spec.Containers[0], contextPod.Spec.Containers[0]
	if !reflect.DeepEqual(pc.SecurityContext, cc.SecurityContext) || !reflect.DeepEqual(pc.Resources, cc.Resources) ||
		!reflect.DeepEqual(probe.Spec.SecurityContext, contextPod.Spec.SecurityContext) || *probe.Spec.AutomountServiceAccountToken {
		t.Errorf("the probe is locked down otherwise than a context:\n%+v\n%+v", probe.Spec, contextPod.Spec)
	}
	if pc.Command[len(pc.Command)-1] != "10.244.0.9:8888" || len(pc.Env) != 1 || pc.Env[0].ValueFrom.FieldRef.FieldPath != "status.hostIP" {
		t.Errorf("probe command %q, env %+v", pc.Command, pc.Env)
	}
	want := map[string]string{labelOwner: "o", labelReplica: "r", labelContextID: "canary-x-probe", labelCanary: "probe"}
	if !reflect.DeepEqual(probe.Labels, want) {
		t.Errorf("labels %v, want %v", probe.Labels, want)
	}
	// The context's policy selects the probe.
	sel := r.policy("canary-x-probe", probe.Labels, nil).Spec.PodSelector.MatchLabels
	for k, v := range sel {
		if probe.Labels[k] != v {
			t.Errorf("the context policy's selector %v does not select the probe %v", sel, probe.Labels)
		}
	}
	// No context's policy selects the listener.
	listener := r.canaryListener("canary-x-listener", "img")
	if listener.Labels[labelContextID] == probe.Labels[labelContextID] || listener.Spec.Containers[0].Env != nil {
		t.Errorf("listener %v env %v", listener.Labels, listener.Spec.Containers[0].Env)
	}
}

// testRuntime connects to the test cluster, or skips.
func testRuntime(t *testing.T) *Runtime {
	t.Helper()
	k := testenv.Kubeconfig()
	if k == "" || testing.Short() {
		t.Skip("no test cluster: set SANDBOXD_TEST_KUBECONFIG")
	}
	owner := testenv.Owner(t)
	r, err := New(t.Context(), Config{
		Kubeconfig:  k,
		Owner:       owner,
		Replica:     owner,
		DaemonCIDRs: []string{testenv.KubeHostAddress() + "/32"},
		Limits:      Limits{Memory: 512 << 20, CPUs: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// requireNoCanaries fails t if the check left pods or policies.
func requireNoCanaries(t *testing.T, r *Runtime) {
	t.Helper()
	opts := metav1.ListOptions{LabelSelector: labelOwner + "=" + r.cfg.Owner}
	pods, err := r.cs.CoreV1().Pods(r.cfg.Namespace).List(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	policies, err := r.cs.NetworkingV1().NetworkPolicies(r.cfg.Namespace).List(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			t.Errorf("pod %s left", p.Name)
		}
	}
	for _, p := range policies.Items {
		t.Errorf("network policy %s left", p.Name)
	}
}

// On the test cluster, whose enforcer runs, a context's policy holds: the
// check passes, quickly, and leaves nothing behind, not even what a
// previous daemon's check left.
func TestNetworkPolicyEnforced(t *testing.T) {
	r := testRuntime(t)
	// What a daemon that died during a check leaves.
	left := r.canaryListener("canary-left-listener", testenv.KernelImage())
	if _, err := r.cs.CoreV1().Pods(r.cfg.Namespace).Create(t.Context(), left, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := r.CheckNetworkPolicy(t.Context(), testenv.KernelImage()); err != nil {
		t.Fatal(err)
	}
	t.Logf("checked in %v", time.Since(start))
	requireNoCanaries(t, r)
}

// Where egress is let through, as a cluster without an enforcer lets
// everything through, the check says so and names what the probe reached.
func TestNetworkPolicyNotEnforcedIsDetected(t *testing.T) {
	r := testRuntime(t)
	allowAll := []networkingv1.NetworkPolicyEgressRule{{}}
	err := r.checkPolicy(t.Context(), testenv.KernelImage(), allowAll)
	if !errors.Is(err, ErrNetworkNotEnforced) || !strings.Contains(err.Error(), ":8888") {
		t.Fatalf("with egress allowed: %v", err)
	}
	t.Log(err)
	requireNoCanaries(t, r)
}

// A listener that cannot start fails the check as such, not as blocked.
func TestNetworkPolicyCheckNeedsTheListener(t *testing.T) {
	r := testRuntime(t)
	r.cfg.PullPolicy = corev1.PullNever
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err := r.CheckNetworkPolicy(ctx, "sandboxd/no-such-image:latest")
	if err == nil || errors.Is(err, ErrNetworkNotEnforced) || !strings.Contains(err.Error(), "listener") {
		t.Fatalf("with no image: %v", err)
	}
	t.Log(err)
	requireNoCanaries(t, r)
}

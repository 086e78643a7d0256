package main

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeclient "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// kubeTest skips t unless the tests run on a cluster (make test-kube), and
// returns a client of it and the namespace the test daemons use.
func kubeTest(t *testing.T) (kubeclient.Interface, string) {
	t.Helper()
	kubeconfig := testenv.Kubeconfig()
	if kubeconfig == "" {
		t.Skip("runs on Kubernetes: make test-kube sets SANDBOXD_TEST_KUBECONFIG")
	}
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}, &clientcmd.ConfigOverrides{})
	cfg, err := loader.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	ns, _, err := loader.Namespace()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubeclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, ns
}

// A context's pod is locked down, its token is in a Secret rather than in
// the pod's spec, a NetworkPolicy shuts it in, and all three go with it.
func TestKubePodIsHardened(t *testing.T) {
	cs, ns := kubeTest(t)
	d := startDaemon(t, "--pool", "python=0")
	id := d.create(t)
	ctx := context.Background()
	name := "sandboxd-" + id
	pod, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := pod.Spec
	c := spec.Containers[0]
	psc, sc := spec.SecurityContext, c.SecurityContext
	checks := []struct {
		what string
		ok   bool
	}{
		{"runs as uid 61000, never root", psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 61000 && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot},
		{"seccomp RuntimeDefault", psc != nil && psc.SeccompProfile != nil && psc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault},
		{"read-only root", sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem},
		{"no privilege escalation", sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation},
		{"all capabilities dropped", sc != nil && sc.Capabilities != nil && len(sc.Capabilities.Add) == 0 && len(sc.Capabilities.Drop) == 1 && sc.Capabilities.Drop[0] == "ALL"},
		{"no service account token", spec.AutomountServiceAccountToken != nil && !*spec.AutomountServiceAccountToken},
		{"no service links", spec.EnableServiceLinks != nil && !*spec.EnableServiceLinks},
		{"short grace", spec.TerminationGracePeriodSeconds != nil && *spec.TerminationGracePeriodSeconds <= 5},
		{"a deadline", spec.ActiveDeadlineSeconds != nil && *spec.ActiveDeadlineSeconds > 0},
		{"memory and CPU limits", !c.Resources.Limits.Memory().IsZero() && !c.Resources.Limits.Cpu().IsZero()},
		{"not restarted", spec.RestartPolicy == corev1.RestartPolicyNever},
	}
	for _, check := range checks {
		if !check.ok {
			t.Errorf("pod %s: not %s", name, check.what)
		}
	}
	sized := map[string]bool{}
	for _, v := range spec.Volumes {
		if v.EmptyDir != nil && v.EmptyDir.SizeLimit != nil {
			sized[v.Name] = true
		}
	}
	if !sized["tmp"] {
		t.Errorf("/tmp is not a sized emptyDir: %+v", spec.Volumes)
	}
	for _, e := range c.Env {
		if e.Name == "JUPYTER_TOKEN" && (e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			t.Errorf("the token is in the pod's spec: %+v", e)
		}
	}
	if _, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
		t.Errorf("the context's secret: %v", err)
	}
	policy, err := cs.NetworkingV1().NetworkPolicies(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the context's network policy: %v", err)
	}
	if len(policy.Spec.Egress) != 0 || len(policy.Spec.PolicyTypes) != 2 || policy.Spec.PodSelector.MatchLabels["sandboxd.context_id"] != id {
		t.Errorf("the policy does not shut the pod in: %+v", policy.Spec)
	}
	for _, p := range policy.Spec.Ingress {
		for _, port := range p.Ports {
			if port.Port == nil || port.Port.IntValue() != 8888 {
				t.Errorf("the policy lets in more than the server's port: %+v", p)
			}
		}
	}

	e := d.execute(t, id, `import os; print(os.getuid(), os.path.exists("/var/run/secrets/kubernetes.io"), sorted(k for k in os.environ if k.endswith("_SERVICE_HOST") and k != "KUBERNETES_SERVICE_HOST"))`, 10)
	if got := strings.TrimSpace(e.Output.Stdout); got != "61000 False []" {
		t.Errorf("uid, service account token, service links seen by code: %q %+v", got, e)
	}

	if status := d.call(t, "DELETE", "/api/v1/contexts/"+id, nil, nil); status != 200 && status != 204 {
		t.Fatalf("delete: %d", status)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, perr := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		_, serr := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		_, nerr := cs.NetworkingV1().NetworkPolicies(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(perr) && apierrors.IsNotFound(serr) && apierrors.IsNotFound(nerr) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left after delete: pod %v, secret %v, policy %v", perr, serr, nerr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

package kubetest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/remotecommand"
)

// The pause image that up.sh builds doubles as a TCP listener and client.
const testImage = "registry.k8s.io/pause:3.10"

func TestPodsRunAndNetworkPolicyBlocksEgress(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	c, err := Start(ctx)
	if err != nil {
		if os.Getenv("SANDBOXD_REQUIRE_KUBE") == "1" {
			t.Fatal(err)
		}
		t.Skipf("no test cluster (set SANDBOXD_REQUIRE_KUBE=1 to fail instead): %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	config, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client := kubernetes.NewForConfigOrDie(config)

	ns, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "kubetest-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	server := runPod(ctx, t, client, ns.Name, "server", "/pause", "-listen", ":8080")
	runPod(ctx, t, client, ns.Name, "client", "/pause")
	target := fmt.Sprintf("%s:8080", server.Status.PodIP)
	dial := func() error { return execIn(ctx, config, client, ns.Name, "client", "/pause", "-dial", target) }

	if err := eventually(10*time.Second, func() bool { return dial() == nil }); err != nil {
		t.Fatalf("client cannot reach %s without a policy: %v", target, dial())
	}
	policy, err := client.NetworkingV1().NetworkPolicies(ns.Name).Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-client-egress"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := eventually(30*time.Second, func() bool { return dial() != nil }); err != nil {
		t.Fatalf("client still reaches %s under a policy denying its egress", target)
	}
	err = client.NetworkingV1().NetworkPolicies(ns.Name).Delete(ctx, policy.Name, metav1.DeleteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := eventually(30*time.Second, func() bool { return dial() == nil }); err != nil {
		t.Fatalf("client cannot reach %s once the policy is gone: %v", target, dial())
	}
}

// runPod starts a pod labelled app=name and waits until it is ready.
func runPod(ctx context.Context, t *testing.T, client kubernetes.Interface, ns, name string, command ...string) *corev1.Pod {
	t.Helper()
	grace := int64(1)
	_, err := client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: name, Image: testImage, ImagePullPolicy: corev1.PullNever, Command: command,
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	err = eventually(60*time.Second, func() bool {
		pod, err = client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && isReady(pod)
	})
	if err != nil {
		t.Fatalf("pod %s not ready: %+v", name, pod.Status)
	}
	return pod
}

func isReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// execIn runs a command in the pod's only container and fails if it exits
// non-zero.
func execIn(ctx context.Context, config *rest.Config, client kubernetes.Interface, ns, pod string, command ...string) error {
	req := client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Command: command, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	executor, err := remotecommand.NewSPDYExecutor(config, "POST", req.URL())
	if err != nil {
		return err
	}
	var stdout, stderr bytes.Buffer
	if err := executor.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr}); err != nil {
		return fmt.Errorf("%w: %s", err, stderr.String())
	}
	return nil
}

func eventually(timeout time.Duration, ok func() bool) error {
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
	return nil
}

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/apitest"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// TestKubeDeploy applies deploy/kubernetes, as the README tells users to,
// in a namespace of its own on the cluster of SANDBOXD_TEST_KUBECONFIG,
// drives the replicas it starts, and removes it all again. The cluster
// must hold the image sandboxd/sandboxd:latest (scripts/kube/up.sh imports
// it).
func TestKubeDeploy(t *testing.T) {
	kubeconfig := testenv.Kubeconfig()
	if kubeconfig == "" {
		t.Skip("needs a cluster: set SANDBOXD_TEST_KUBECONFIG")
	}
	k := kubectl{path: kubectlPath(t, kubeconfig), kubeconfig: kubeconfig, ns: testenv.Owner(t)}
	overlay := writeOverlay(t, k.ns)
	key := rand.Text()

	dump := sync.OnceFunc(func() { k.dump(t) })
	// Whatever a failed test left: all of it is in the namespace.
	t.Cleanup(func() {
		if t.Failed() {
			dump()
		}
		k.run("delete", "namespace", k.ns, "--ignore-not-found", "--wait=false")
	})
	// In the README's order: the pods wait for the key's Secret.
	k.must(t, "apply", "-k", overlay)
	k.must(t, "-n", k.ns, "create", "secret", "generic", "sandboxd-api-key", "--from-literal=api-key="+key)
	k.must(t, "-n", k.ns, "rollout", "status", "deployment/sandboxd", "--timeout=3m")

	pods := strings.Fields(k.must(t, "-n", k.ns, "get", "pods", "-l", "app.kubernetes.io/name=sandboxd",
		"--field-selector", "status.phase=Running", "-o", `jsonpath={range .items[*]}{.status.podIP}{" "}{end}`))
	if len(pods) != 2 {
		t.Fatalf("sandboxd pods at %q, want 2", pods)
	}
	auth := http.Header{"Authorization": {"Bearer " + key}}
	replicas := make([]*daemon, len(pods))
	for i, ip := range pods {
		replicas[i] = &daemon{url: "http://" + ip + ":8080", validator: apitest.New(t), auth: auth}
	}
	service := &daemon{url: "http://" + k.must(t, "-n", k.ns, "get", "service", "sandboxd", "-o", "jsonpath={.spec.clusterIP}") + ":8080", validator: apitest.New(t), auth: auth}
	if !answers(service.url, 30*time.Second) {
		// No kube-proxy on the host: the pods' addresses are reachable.
		t.Logf("the service at %s does not answer: going to a pod directly", service.url)
		service = replicas[0]
	}

	t.Run("key required", func(t *testing.T) {
		req, _ := http.NewRequest("GET", service.url+"/api/v1/contexts", nil)
		req.Header.Set("Authorization", "Bearer wrong")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("list with a wrong key: %d, want 401", resp.StatusCode)
		}
	})
	t.Run("seed flow through the service", func(t *testing.T) {
		seedFlow(t, k, service, service)
	})

	t.Run("command through the API server's exec", func(t *testing.T) {
		id := service.create(t)
		if r := service.command(t, id, map[string]any{"command": "id -u"}); r.ExitCode != 0 || r.Stdout != "61000\n" {
			t.Errorf("id -u: %+v", r)
		}
		if status := service.call(t, "DELETE", "/api/v1/contexts/"+id, nil, nil); status != http.StatusNoContent {
			t.Errorf("delete: status %d", status)
		}
	})
	t.Run("a context made through one replica runs through the other", func(t *testing.T) {
		seedFlow(t, k, replicas[0], replicas[1])
	})

	t.Run("a replica that goes leaves its contexts to the other", func(t *testing.T) {
		id := replicas[0].create(t)
		if e := replicas[0].execute(t, id, "x = 41", 0); !e.Success {
			t.Fatalf("x = 41: %+v", e)
		}
		owner := k.must(t, "-n", k.ns, "get", "pods", "-l", "sandboxd.context_id="+id, "-o", "jsonpath={.items[0].metadata.labels.sandboxd\\.replica}")
		ownerIP := k.must(t, "-n", k.ns, "get", "pod", owner, "-o", "jsonpath={.status.podIP}")
		survivor := replicas[0]
		if strings.Contains(survivor.url, "//"+ownerIP+":") {
			survivor = replicas[1]
		}
		// A rollout's SIGTERM, as kubectl rollout restart sends.
		k.must(t, "-n", k.ns, "delete", "pod", owner, "--wait=true", "--timeout=2m")
		deadline := time.Now().Add(2 * time.Minute)
		for {
			e := survivor.execute(t, id, "print(x + 1)", 0)
			if e.Output.Stdout == "42\n" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the context after its replica went: %+v", e)
			}
			time.Sleep(time.Second)
		}
	})

	if t.Failed() {
		dump()
	}
	// Contexts go with the namespace.
	k.must(t, "delete", "-k", overlay, "--ignore-not-found", "--wait", "--timeout=3m")
	if out, err := k.run("get", "namespace", k.ns, "-o", "name"); err == nil {
		t.Errorf("namespace left after delete -k: %s", out)
	}
}

// seedFlow makes a context through made, runs code in it, lists and deletes
// it through used, and checks that its pod, Secret and NetworkPolicy go.
func seedFlow(t *testing.T, k kubectl, made, used *daemon) {
	id := made.create(t)
	if e := used.execute(t, id, "x = 1", 0); !e.Success {
		t.Fatalf("x = 1: %+v", e)
	}
	if e := used.execute(t, id, "print(x + 1)", 0); !e.Success || e.Output.Stdout != "2\n" {
		t.Fatalf("print(x + 1): %+v", e)
	}
	found := false
	for _, c := range used.list(t) {
		found = found || c.ContextID == id
	}
	if !found {
		t.Errorf("context %s not listed", id)
	}
	if status := used.call(t, "DELETE", "/api/v1/contexts/"+id, nil, nil); status != http.StatusNoContent {
		t.Fatalf("delete: status %d", status)
	}
	k.waitNone(t, "sandboxd.context_id="+id)
}

// kubectl runs kubectl against the test's cluster.
type kubectl struct {
	path, kubeconfig string
	ns               string // the test's namespace
}

func (k kubectl) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, k.path, append([]string{"--kubeconfig", k.kubeconfig}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &kubectlError{args: args, err: err, stderr: stderr.String()}
	}
	return strings.TrimSpace(stdout.String()), nil
}

func (k kubectl) must(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := k.run(args...)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// waitNone waits until no pod, Secret or NetworkPolicy of the namespace
// matches selector.
func (k kubectl) waitNone(tb testing.TB, selector string) {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		left := k.must(tb, "-n", k.ns, "get", "pods,secrets,networkpolicies", "-l", selector, "-o", "name")
		if left == "" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("left with %s: %s", selector, left)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// dump logs what tells why the deployment failed.
func (k kubectl) dump(tb testing.TB) {
	for _, args := range [][]string{
		{"get", "all,networkpolicies,secrets", "-o", "wide"},
		{"get", "events", "--sort-by=.lastTimestamp"},
		{"logs", "-l", "app.kubernetes.io/name=sandboxd", "--prefix", "--tail=40"},
	} {
		out, err := k.run(append([]string{"-n", k.ns}, args...)...)
		tb.Logf("kubectl %s:\n%s%v", strings.Join(args, " "), out, errOrEmpty(err))
	}
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

type kubectlError struct {
	args   []string
	err    error
	stderr string
}

func (e *kubectlError) Error() string {
	return "kubectl " + strings.Join(e.args, " ") + ": " + e.err.Error() + ": " + strings.TrimSpace(e.stderr)
}

// kubectlPath finds kubectl: beside the cluster's other binaries, where
// scripts/kube/up.sh notes them next to the kubeconfig, or on PATH.
func kubectlPath(tb testing.TB, kubeconfig string) string {
	tb.Helper()
	if cache, err := os.ReadFile(filepath.Join(filepath.Dir(kubeconfig), "cache")); err == nil {
		path := filepath.Join(strings.TrimSpace(string(cache)), "bin", "kubectl")
		if _, err := os.Stat(path); err == nil {
			return path
		}
	}
	path, err := exec.LookPath("kubectl")
	if err != nil {
		tb.Fatalf("no kubectl to apply deploy/kubernetes with: %v", err)
	}
	return path
}

// writeOverlay writes a kustomization that puts deploy/kubernetes in
// namespace ns, and returns its directory.
func writeOverlay(tb testing.TB, ns string) string {
	tb.Helper()
	base, err := filepath.Abs("../../deploy/kubernetes")
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	// kustomize takes no absolute path of a kustomization.
	rel, err := filepath.Rel(dir, base)
	if err != nil {
		tb.Fatal(err)
	}
	kustomization := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: " + ns + "\nresources:\n  - " + rel + "\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// answers reports whether url's /health answers within timeout.
func answers(url string, timeout time.Duration) bool {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := client.Get(url + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	return false
}

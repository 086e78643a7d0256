package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// What contexts on Kubernetes must be kept from. TestBombsHitLimits, which
// runs on the cluster too when SANDBOXD_TEST_KUBECONFIG is set, covers the
// fork and memory bombs: a pod has no process limit of its own, so the fork
// bomb is stopped only where the kubelet's podPidsLimit is set (256, as
// --pids is on Docker).

// Code in a context's pod connects to nothing: not the internet, not its
// node (on its own address or the pod network's gateway, which is the node
// too), not the API server, not a cloud's metadata service.
func TestKubeContextIsShutIn(t *testing.T) {
	cs, ns := kubeTest(t)
	d := startDaemon(t)
	id := d.create(t)
	pod, err := cs.CoreV1().Pods(ns).Get(t.Context(), "sandboxd-"+id, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	api, err := cs.CoreV1().Services("default").Get(t.Context(), "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node := pod.Status.HostIP
	targets := []string{
		"1.1.1.1:80", "8.8.8.8:53",
		node + ":10250", node + ":6443", node + ":22", node + ":10256",
		"GATEWAY:10250", "GATEWAY:6443",
		api.Spec.ClusterIP + ":443",
		"169.254.169.254:80",
	}
	code := fmt.Sprintf(shutInProbe, "['"+strings.Join(targets, "', '")+"']")
	e := d.execute(t, id, code, 60)
	if e.Error != nil || strings.Count(e.Output.Stdout, "blocked") != len(targets) {
		t.Errorf("from the context's pod (node %s):\n%s%+v", node, e.Output.Stdout, e.Error)
	}
	t.Logf("from the context's pod (node %s):\n%s", node, e.Output.Stdout)
}

// shutInProbe connects to each of a Python list of host:port at once, and
// prints for each whether it got through. GATEWAY is the pod's default
// gateway.
const shutInProbe = `import socket, struct
from concurrent.futures import ThreadPoolExecutor
gateway = next(socket.inet_ntoa(struct.pack('<L', int(f[2], 16)))
               for f in (l.split() for l in open('/proc/net/route')) if f[1] == '00000000')
targets = [t.replace('GATEWAY', gateway) for t in %s]
def attempt(target):
    host, port = target.rsplit(':', 1)
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        return 'CONNECTED'
    except OSError as e:
        return 'blocked (' + type(e).__name__ + ')'
with ThreadPoolExecutor(len(targets)) as pool:
    for t, result in zip(targets, pool.map(attempt, targets)):
        print(t, result)
`

// A context's pod runs as the context's user with no privileges, on a
// read-only root, and with nothing of the cluster's in it.
func TestKubeContextIsLockedDown(t *testing.T) {
	kubeTest(t)
	d := startDaemon(t)
	id := d.create(t)
	attempts := []struct{ name, code, want string }{
		{"user", "import os\nprint(os.getuid(), os.geteuid(), os.getgid(), os.getegid())", "61000 61000 61000 61000\n"},
		{"privileges", "print(sorted(l.split()[1] for l in open('/proc/self/status') if l.split()[0] in ('CapEff:', 'CapPrm:', 'NoNewPrivs:', 'Seccomp:')))", "['0000000000000000', '0000000000000000', '1', '2']\n"},
		{"read-only root", "import os\nfor p in ('/etc/owned', '/usr/local/owned', '/owned'):\n    try:\n        open(p, 'w')\n    except OSError as e:\n        print(e.errno, end=' ')", "30 30 30 "},
		{"service account token", "import os\nprint(os.path.exists('/var/run/secrets/kubernetes.io'), os.path.exists('/run/secrets/kubernetes.io'))", "False False\n"},
		{"writable workspace and tmp", "open('/workspace/x', 'w').write('x'); open('/tmp/x', 'w').write('x'); print('ok')", "ok\n"},
	}
	// Not io_uring nor ptrace: the pod's seccomp profile is the container
	// runtime's default (RuntimeDefault), which in containerd 1.6 allows
	// both, where the Docker platform installs a profile of its own
	// (internal/docker/seccomp.go).
	for _, a := range hostileAttempts {
		if slices.Contains([]string{"write outside workspace", "mount", "raw socket", "host environ"}, a.name) {
			attempts = append(attempts, a)
		}
	}
	for _, tt := range attempts {
		t.Run(tt.name, func(t *testing.T) {
			e := d.execute(t, id, tt.code, 30)
			if e.Output.Stdout != tt.want {
				t.Errorf("stdout %q (stderr %q, error %+v), want %q", e.Output.Stdout, e.Output.Stderr, e.Error, tt.want)
			}
		})
	}
}

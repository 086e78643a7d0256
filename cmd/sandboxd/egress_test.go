package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/apitest"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// hostAddress returns an address of this host that is not loopback: one
// that code in a context must not reach through the egress proxy either.
func hostAddress(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	t.Fatal("this host has no IPv4 address but loopback")
	return ""
}

// hostService serves a secret on addr (host:0), as a service on the
// daemon's host would, and returns its URL.
func hostService(t *testing.T, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "host secret")
	}))
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// fetch is Python that returns the status of a GET through the context's
// proxy settings, or the reason it failed. It checks no certificate: what
// is tested is the tunnel, and networks that intercept TLS re-sign it with
// a CA of their own, which the image does not trust.
const fetch = `import ssl, urllib.request, urllib.error
def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=20, context=ssl._create_unverified_context()) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return f"{e.code} {e.read().decode()[:80]}"
    except Exception as e:
        return type(e).__name__
`

// A context created with "network": true reaches the public internet over
// HTTP and HTTPS through the daemon's proxy, and nothing else: not the
// host's services, not cloud metadata, not the network directly.
func TestEgress(t *testing.T) {
	loopbackURL := hostService(t, "127.0.0.1:0")
	_, loopbackPort, _ := strings.Cut(strings.TrimPrefix(loopbackURL, "http://"), ":")
	hostURL := hostService(t, hostAddress(t)+":0")
	_, hostPort, _ := strings.Cut(strings.TrimPrefix(hostURL, "http://"), ":")
	// The host services' ports are allowed, so that it is their addresses
	// that are refused.
	d := startDaemon(t, "--allow-egress", "--egress-ports", "80,443,"+loopbackPort+","+hostPort)

	var c struct {
		contextJSON
		Network bool `json:"network"`
	}
	if status := d.call(t, "POST", "/api/v1/contexts", map[string]any{"language": "python", "network": true}, &c); status != http.StatusCreated || !c.Network {
		t.Fatalf("create with network: status %d, %+v", status, c)
	}
	id := c.ContextID
	d.execute(t, id, fetch, 30)

	for _, tt := range []struct{ name, url, want string }{
		{"http", "http://deb.debian.org/debian/dists/trixie/Release", "200"},
		{"https", "https://proxy.golang.org/", "200"},
		// 127.0.0.1 is in NO_PROXY: it is the container's own loopback.
		{"loopback", loopbackURL, "URLError"},
		// Through the proxy, the host's loopback is refused.
		{"host loopback", "http://[::ffff:127.0.0.1]:" + loopbackPort + "/", "403 sandboxd: egress to "},
		// Refused as one of the engine host's addresses, read from the
		// host itself, as it would be from a daemon in a container.
		{"host address", hostURL, "403 sandboxd: egress to " + hostAddress(t) + " refused: " + hostAddress(t) + " is in " + hostAddress(t) + "/32"},
		{"metadata", "http://169.254.169.254/latest/meta-data/", "403 sandboxd: egress to 169.254.169.254"},
		{"private", "http://10.0.0.1/", "403 sandboxd: egress to 10.0.0.1"},
		// Only the ports of --egress-ports: no mail, no SSH.
		{"port 25", "http://deb.debian.org:25/", "403 sandboxd: egress to deb.debian.org:25 refused: port 25 is not allowed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := d.execute(t, id, fmt.Sprintf("print(fetch(%q))", tt.url), 60)
			if !strings.HasPrefix(e.Output.Stdout, tt.want) || strings.Contains(e.Output.Stdout, "host secret") {
				t.Errorf("GET %s: %q (stderr %q), want %q…", tt.url, e.Output.Stdout, e.Output.Stderr, tt.want)
			}
		})
	}
	t.Run("CONNECT ports", func(t *testing.T) {
		code := `import http.client
def tunnel(target):
    c = http.client.HTTPConnection("127.0.0.1", 3128, timeout=20)
    c.request("CONNECT", target, headers={"Host": target})
    r = c.getresponse()
    body = r.read().decode() if r.status != 200 else ""
    c.close()
    return f"{r.status} {body}".strip()
print(tunnel("deb.debian.org:443"))
print(tunnel("deb.debian.org:22"))`
		e := d.execute(t, id, code, 60)
		want := "200\n403 sandboxd: egress to deb.debian.org:22 refused: port 22 is not allowed (allowed: 80, 443, " + loopbackPort + ", " + hostPort + ")\n"
		if e.Output.Stdout != want {
			t.Errorf("CONNECT to 443 and 22: %q (stderr %q), want %q", e.Output.Stdout, e.Output.Stderr, want)
		}
	})
	t.Run("no direct connection", func(t *testing.T) {
		e := d.execute(t, id, "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 80), timeout=3)\nexcept OSError as e:\n    print(type(e).__name__)", 30)
		if e.Output.Stdout != "OSError\n" {
			t.Errorf("direct connection: %+v", e)
		}
	})
	t.Run("commands", func(t *testing.T) {
		var res struct {
			Stdout   string `json:"stdout"`
			ExitCode int    `json:"exit_code"`
		}
		script := fetch + "print(fetch('http://deb.debian.org/debian/dists/trixie/Release'))"
		d.call(t, "POST", "/api/v1/contexts/"+id+"/commands", map[string]any{"command": "python3 -c \"$SCRIPT\"", "env": map[string]string{"SCRIPT": script}}, &res)
		if res.Stdout != "200\n" {
			t.Errorf("command through the proxy: %+v", res)
		}
	})
	t.Run("bash", func(t *testing.T) {
		var b contextJSON
		if status := d.call(t, "POST", "/api/v1/contexts", map[string]any{"language": "bash", "network": true}, &b); status != http.StatusCreated {
			t.Fatalf("create a bash context: status %d", status)
		}
		e := d.execute(t, b.ContextID, "python3 -c 'import urllib.request; print(urllib.request.urlopen(\"http://deb.debian.org/debian/\", timeout=20).status)'", 60)
		if e.Output.Stdout != "200\n" {
			t.Errorf("bash context through the proxy: %+v", e)
		}
		d.call(t, "DELETE", "/api/v1/contexts/"+b.ContextID, nil, nil)
	})

	// A context that did not ask has no way out, proxy or not.
	plain := d.create(t)
	e := d.execute(t, plain, fetch+"import os\nprint(os.environ.get('HTTP_PROXY'), fetch('http://deb.debian.org/'), fetch('http://127.0.0.1:3128/'))", 60)
	if e.Output.Stdout != "None URLError URLError\n" {
		t.Errorf("context without network: %+v", e)
	}

	// Deleting the context takes its proxy away. Over exec, the proxy is
	// reached only from inside the container, which goes with it.
	if testenv.Transport() == "exec" {
		return
	}
	sock := filepath.Join(d.socketDir, id, "egress.sock")
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("egress socket: %v", err)
	}
	d.call(t, "DELETE", "/api/v1/contexts/"+id, nil, nil)
	if _, err := net.Dial("unix", sock); err == nil {
		t.Error("the egress socket still answers after the context is gone")
	}
}

// A daemon not started with --allow-egress refuses contexts that ask for
// networking, with a code a client can act on.
func TestEgressDisabled(t *testing.T) {
	d := startDaemon(t, "--pool", "python=0")
	var e errorJSON
	if status := d.call(t, "POST", "/api/v1/contexts", map[string]any{"network": true}, &e); status != http.StatusForbidden || e.Code != "EGRESS_DISABLED" {
		t.Errorf("create with network: %d %+v", status, e)
	}
}

// A daemon in a container, as docker-compose runs it, sees its container's
// interfaces, not the host's; contexts must not reach the host's addresses
// all the same. The daemon built from this tree runs in a container, as
// the compose file's does, and a context asks its proxy for a service on
// the host's address.
func TestEgressFromContainer(t *testing.T) {
	testenv.RequireDocker(t)
	hostURL := hostService(t, hostAddress(t)+":0")
	_, hostPort, _ := strings.Cut(strings.TrimPrefix(hostURL, "http://"), ":")

	bin := filepath.Join(t.TempDir(), "sandboxd")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // for the image's libc, whatever it is
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	owner := testenv.Owner(t)
	sockets := testenv.SocketDir(t)
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	docker := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("docker", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("docker", "logs", owner).CombinedOutput()
			t.Logf("daemon's log:\n%s", out)
		}
		// Stopped, it removes its contexts.
		exec.Command("docker", "stop", "-t", "30", owner).Run()
		exec.Command("docker", "rm", "-f", owner).Run()
	})
	// The kernel image serves as a plain Debian; the socket directory has
	// the same path inside and out, since the engine mounts it in kernels.
	docker("run", "-d", "--name", owner, "--user", "0",
		"-v", testenv.EngineSocket()+":/var/run/docker.sock",
		"-v", sockets+":"+sockets,
		"-v", bin+":/usr/local/bin/sandboxd-test:ro",
		"-p", "127.0.0.1:"+port+":8080",
		"--entrypoint", "/usr/local/bin/sandboxd-test",
		testenv.KernelImage(),
		"--listen", "0.0.0.0:8080", "--insecure", "--name", owner, "--socket-dir", sockets,
		"--image", testenv.KernelImage(), "--pool", "python=0", "--workspace-size", "0",
		"--allow-egress", "--egress-ports", "80,443,"+hostPort)

	d := &daemon{url: "http://" + addr, validator: apitest.New(t)}
	d.waitHealthy(t, time.Minute)

	var c contextJSON
	if status := d.call(t, "POST", "/api/v1/contexts", map[string]any{"language": "python", "network": true}, &c); status != http.StatusCreated {
		t.Fatalf("create with network: status %d", status)
	}
	ip := hostAddress(t)
	want := "403 sandboxd: egress to " + ip + " refused: " + ip + " is in " + ip + "/32"
	e := d.execute(t, c.ContextID, fetch+fmt.Sprintf("print(fetch(%q), fetch('http://deb.debian.org/debian/dists/trixie/Release'))", hostURL), 60)
	if out := e.Output.Stdout; !strings.HasPrefix(out, want) || !strings.HasSuffix(out, " 200\n") || strings.Contains(out, "host secret") {
		t.Errorf("GET %s from a daemon in a container: %q (stderr %q), want %q… 200", hostURL, e.Output.Stdout, e.Output.Stderr, want)
	}
}

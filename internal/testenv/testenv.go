// Package testenv gives tests what they need to run against a real Docker
// engine and a real kernel image. It imports nothing of sandboxd's, so every
// package's tests can use it.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/google/uuid"
)

// KernelImage is the image tests run kernels in: $SANDBOXD_TEST_IMAGE, or
// the one `make images` builds.
func KernelImage() string {
	if img := os.Getenv("SANDBOXD_TEST_IMAGE"); img != "" {
		return img
	}
	return "sandboxd/python-kernel:latest"
}

// Transport is the --transport test daemons run with:
// $SANDBOXD_TEST_TRANSPORT, or "" for the daemon's own choice. make test
// runs the tests that touch the transport once more with exec.
func Transport() string { return os.Getenv("SANDBOXD_TEST_TRANSPORT") }

// Kubeconfig is the cluster test daemons run their contexts in, as pods:
// $SANDBOXD_TEST_KUBECONFIG, which make test-kube sets to the cluster
// scripts/kube/up.sh starts; "" runs them on the Docker engine.
func Kubeconfig() string { return os.Getenv("SANDBOXD_TEST_KUBECONFIG") }

// KubeHostAddress is the address pods and a daemon on this host reach
// each other at: the host's side of the pod network's bridge.
func KubeHostAddress() string {
	if a := os.Getenv("SANDBOXD_TEST_KUBE_HOST_ADDRESS"); a != "" {
		return a
	}
	return "10.244.0.1"
}

// KubeTransport is the --kube-transport test daemons on Kubernetes run
// with: $SANDBOXD_TEST_KUBE_TRANSPORT (ip or exec), or "" for the daemon's
// default, ip.
func KubeTransport() string { return os.Getenv("SANDBOXD_TEST_KUBE_TRANSPORT") }

// DaemonArgs are the flags every test daemon gets from the environment.
func DaemonArgs() []string {
	var args []string
	if t := Transport(); t != "" {
		args = append(args, "--transport", t)
	}
	if k := Kubeconfig(); k != "" {
		args = append(args, "--platform", "kubernetes", "--kubeconfig", k, "--kube-daemon-cidrs", KubeHostAddress()+"/32", "--kube-egress-address", KubeHostAddress())
		if t := KubeTransport(); t != "" {
			args = append(args, "--kube-transport", t)
		}
	}
	return args
}

// EngineSocket is the unix socket of the engine the tests use: the one
// DOCKER_HOST names, as the docker CLI and sandboxd take it, or Docker's.
func EngineSocket() string {
	if path, ok := strings.CutPrefix(os.Getenv("DOCKER_HOST"), "unix://"); ok {
		return path
	}
	return "/var/run/docker.sock"
}

// RequireDocker skips tb when no Docker engine answers, or fails it when
// SANDBOXD_REQUIRE_DOCKER is set (as `make test` and CI do), so tests that
// need Docker never pass silently there. It also skips in -short mode.
func RequireDocker(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs Docker; skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.APIVersion}}").CombinedOutput()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))
	}
	if err != nil {
		if os.Getenv("SANDBOXD_REQUIRE_DOCKER") != "" {
			tb.Fatalf("Docker is required (SANDBOXD_REQUIRE_DOCKER is set) but unavailable: %v", err)
		}
		tb.Skipf("Docker unavailable: %v", err)
	}
}

// Owner returns a daemon name of tb's own, so its containers are told apart
// from those of other tests and of a sandboxd the user runs.
func Owner(tb testing.TB) string {
	return "sandboxd-test-" + uuid.NewString()[:8]
}

// SocketDir returns a fresh directory for kernel sockets, removed at the end.
func SocketDir(tb testing.TB) string {
	tb.Helper()
	// Unix socket paths are short (108 bytes): t.TempDir's can be too long.
	dir, err := os.MkdirTemp("", "sbx")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Clean(dir)
}

// RequireGVisor skips tb unless the Docker engine has gVisor's runtime,
// runsc, registered (scripts/enable-gvisor.sh does it), or fails it when
// SANDBOXD_REQUIRE_GVISOR is set, as CI does.
func RequireGVisor(tb testing.TB) {
	tb.Helper()
	RequireDocker(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{json .Runtimes}}").CombinedOutput()
	if err == nil && bytes.Contains(out, []byte(`"runsc"`)) {
		return
	}
	if os.Getenv("SANDBOXD_REQUIRE_GVISOR") != "" {
		tb.Fatalf("gVisor is required (SANDBOXD_REQUIRE_GVISOR is set) but the engine has no runsc runtime: %s %v", bytes.TrimSpace(out), err)
	}
	tb.Skip("the Docker engine has no runsc runtime; scripts/enable-gvisor.sh registers it")
}

// Chromium returns the path of a headless-capable Chromium, skipping tb
// when there is none, or failing it when SANDBOXD_REQUIRE_DOCKER is set:
// `make test` installs Debian's chromium, so tests that drive a real
// browser never pass silently there.
func Chromium(tb testing.TB) string {
	tb.Helper()
	if testing.Short() {
		tb.Skip("drives a browser; skipped in -short mode")
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("SANDBOXD_REQUIRE_DOCKER") != "" {
		tb.Fatal("no chromium on PATH (SANDBOXD_REQUIRE_DOCKER is set); `make test` installs it")
	}
	tb.Skip("no chromium on PATH")
	return ""
}

// Browser starts a headless Chromium for tb and returns a context to
// drive its first tab with chromedp; the browser ends with the test.
// Downloads are refused, as by a user who does not save the file. Bound
// each action with a context derived from the one returned: the tab lives
// as long as the context of its first action, which Browser runs.
func Browser(tb testing.TB) context.Context {
	tb.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(Chromium(tb)),
		chromedp.NoSandbox,
		chromedp.UserDataDir(tb.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	tb.Cleanup(func() { cancel(); cancelAlloc() })
	_, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{Behavior: browser.SetDownloadBehaviorBehaviorDeny})
	if err == nil {
		err = chromedp.Do(ctx, chromedp.Navigate("about:blank"))
	}
	if err != nil {
		tb.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// NewTab opens another tab of the browser b, closed by the returned func.
func NewTab(tb testing.TB, b context.Context) (context.Context, func()) {
	tb.Helper()
	ctx, cancel := chromedp.NewContext(b)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		cancel()
		tb.Fatalf("open a tab: %v", err)
	}
	return ctx, cancel
}

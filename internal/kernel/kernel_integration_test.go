package kernel

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// startKernel runs the kernel image with the docker CLI, as plainly as
// possible, and starts a kernel in it.
func startKernel(t *testing.T, opts Options) *Kernel {
	t.Helper()
	testenv.RequireDocker(t)
	dir := testenv.SocketDir(t)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	const token = "test-token"
	out, err := exec.Command("docker", "run", "-d", "--rm", "--network", "none",
		"-e", "JUPYTER_TOKEN="+token, "-v", dir+":/run/sandboxd", testenv.KernelImage()).CombinedOutput()
	if err != nil {
		t.Fatalf("docker run: %v: %s", err, out)
	}
	id := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", id).Run() })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	server := NewServer(UnixSocket(filepath.Join(dir, "jupyter.sock")), token)
	if err := server.WaitReady(ctx, nil); err != nil {
		t.Fatal(err)
	}
	k, err := Start(ctx, server, "python3", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func mustExecute(t *testing.T, k *Kernel, code string, timeout time.Duration) Result {
	t.Helper()
	res, err := k.Execute(context.Background(), Request{Code: code, Timeout: timeout})
	if err != nil {
		t.Fatalf("execute %q: %v", code, err)
	}
	return res
}

// The websocket is redialled with the same session when it drops, and the
// kernel keeps its state.
func TestKernelReconnects(t *testing.T) {
	k := startKernel(t, Options{})
	mustExecute(t, k, "x = 41", 30*time.Second)

	k.mu.Lock()
	conn := k.conn
	k.mu.Unlock()
	conn.Close()
	// Wait for the reader to notice, so the next Execute must redial.
	deadline := time.Now().Add(10 * time.Second)
	for {
		k.mu.Lock()
		dropped := k.conn == nil
		k.mu.Unlock()
		if dropped {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("dropped websocket not noticed")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if res := mustExecute(t, k, "print(x + 1)", 30*time.Second); res.Stdout != "42\n" {
		t.Errorf("after reconnect: %+v", res)
	}
}

// A kernel that ignores the interrupt is restarted, and the next execution
// runs in the fresh kernel.
func TestKernelIgnoringInterruptIsRestarted(t *testing.T) {
	k := startKernel(t, Options{InterruptGrace: 2 * time.Second})
	mustExecute(t, k, "x = 1", 30*time.Second)

	res := mustExecute(t, k, "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(120)", time.Second)
	if res.Error == nil || res.Error.Name != ErrTimeout || !strings.Contains(res.Error.Value, "restarted") {
		t.Fatalf("got %+v", res)
	}
	res = mustExecute(t, k, "print('x' in globals())", 60*time.Second)
	if res.Stdout != "False\n" {
		t.Errorf("after restart: %+v", res)
	}
}

// With stop_on_error, a request queued behind one that raised is aborted:
// the aborted reply must end it rather than leave it waiting.
func TestAbortedRequestEnds(t *testing.T) {
	k := startKernel(t, Options{})
	var wg sync.WaitGroup
	results := make([]Result, 2)
	for i, code := range []string{"import time; time.sleep(0.5); 1/0", "print('never')"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = mustExecute(t, k, code, 30*time.Second)
		}()
		time.Sleep(100 * time.Millisecond)
	}
	wg.Wait()
	if results[0].Error == nil || results[0].Error.Name != "ZeroDivisionError" {
		t.Errorf("first: %+v", results[0])
	}
	if results[1].Status != "aborted" || results[1].Stdout != "" {
		t.Errorf("second: %+v", results[1])
	}
	if res := mustExecute(t, k, "print(2)", 30*time.Second); res.Stdout != "2\n" {
		t.Errorf("after abort: %+v", res)
	}
}

// Large outputs arrive whole: the server's iopub rate limits are off.
func TestLargeOutputArrives(t *testing.T) {
	k := startKernel(t, Options{})
	res := mustExecute(t, k, "import sys\nfor i in range(200):\n    sys.stdout.write('y' * 10000 + '\\n')", 60*time.Second)
	if len(res.Stdout) != 200*10001 || res.Truncated {
		t.Errorf("got %d bytes (truncated %v), want %d", len(res.Stdout), res.Truncated, 200*10001)
	}
}

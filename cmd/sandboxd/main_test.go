package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/apitest"
	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/docker"
	"github.com/sandboxd/sandboxd/internal/kubernetes"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// daemon is a sandboxd started by run() in this process, against the real
// Docker engine.
type daemon struct {
	url       string
	owner     string
	socketDir string
	rt        testRuntime
	validator *apitest.Validator
	auth      http.Header // sent with every call: credentials
	stop      context.CancelFunc
	done      chan error
	stopOnce  sync.Once
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startDaemon(tb testing.TB, args ...string) *daemon {
	tb.Helper()
	testenv.RequireDocker(tb)
	d := &daemon{owner: testenv.Owner(tb), socketDir: testenv.SocketDir(tb), validator: apitest.New(tb), done: make(chan error, 1)}
	rt := newTestRuntime(tb, d.owner, d.socketDir)
	d.rt = rt
	tb.Cleanup(func() {
		// Whatever a failed test left behind.
		insts, _ := rt.List(context.Background())
		for _, inst := range insts {
			rt.Remove(context.Background(), inst)
		}
		rt.Close()
	})
	addr := freeAddr(tb)
	d.url = "http://" + addr
	// No one-shot runners unless the test asks: they are containers too.
	args = slices.Concat([]string{"--listen", addr, "--name", d.owner, "--kube-replica", d.owner, "--socket-dir", d.socketDir, "--workspace-dir", tb.TempDir(), "--image", testenv.KernelImage(), "--log-level", "warn", "--runners", "none"}, testenv.DaemonArgs(), args)
	ctx, cancel := context.WithCancel(context.Background())
	d.stop = cancel
	go func() { d.done <- run(ctx, args, func(string) string { return "" }, io.Discard, os.Stderr) }()
	tb.Cleanup(func() { d.shutdown(tb) })

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(d.url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d
			}
		}
		select {
		case err := <-d.done:
			tb.Fatalf("sandboxd exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("sandboxd did not answer /health: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testRuntime is what tests look at a daemon's instances with.
type testRuntime interface {
	List(ctx context.Context) ([]contexts.Instance, error)
	Remove(ctx context.Context, inst contexts.Instance) error
	Exec(ctx context.Context, inst contexts.Instance, spec contexts.ExecSpec) (int, error)
	Close() error
}

// newTestRuntime reaches the instances of the daemon named owner, on the
// platform the tests run on (testenv.Kubeconfig).
func newTestRuntime(tb testing.TB, owner, socketDir string) testRuntime {
	tb.Helper()
	var rt testRuntime
	var err error
	if k := testenv.Kubeconfig(); k != "" {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		rt, err = kubernetes.New(ctx, kubernetes.Config{Kubeconfig: k, Owner: owner, Replica: owner})
	} else {
		rt, err = docker.New(docker.Config{Owner: owner, SocketDir: socketDir})
	}
	if err != nil {
		tb.Fatal(err)
	}
	return rt
}

// waitHealthy waits until a daemon started elsewhere (a process, a
// container) answers /health.
func (d *daemon) waitHealthy(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(d.url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no answer on /health: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// shutdown stops the daemon as SIGTERM does and waits for run to return.
func (d *daemon) shutdown(tb testing.TB) {
	tb.Helper()
	d.stopOnce.Do(func() {
		d.stop()
		select {
		case err := <-d.done:
			if err != nil {
				tb.Errorf("run returned %v", err)
			}
		case <-time.After(2 * time.Minute):
			tb.Error("sandboxd did not stop")
		}
	})
}

// call sends a request, checks the exchange against api/openapi.yaml, and
// decodes a JSON answer into out when out is not nil.
func (d *daemon) call(tb testing.TB, method, path string, body any, out any) int {
	tb.Helper()
	return d.callWith(tb, nil, method, path, body, out)
}

// callWith is call with the request's headers set from header.
func (d *daemon) callWith(tb testing.TB, header http.Header, method, path string, body any, out any) int {
	tb.Helper()
	var reqBody []byte
	if body != nil {
		var err error
		if reqBody, err = json.Marshal(body); err != nil {
			tb.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, d.url+path, bytes.NewReader(reqBody))
	if err != nil {
		tb.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range d.auth {
		req.Header[k] = v
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	d.validator.Check(tb, req, reqBody, resp, respBody)
	if out != nil && len(respBody) > 0 {
		if err := json.Unmarshal(respBody, out); err != nil {
			tb.Fatalf("%s %s: decode %q: %v", method, path, respBody, err)
		}
	}
	return resp.StatusCode
}

type contextJSON struct {
	ContextID string `json:"context_id"`
	Status    string `json:"status"`
}

type executeJSON struct {
	Output struct {
		Stdout string `json:"stdout"`
		Stderr string `json:"stderr"`
	} `json:"output"`
	Success        bool         `json:"success"`
	ExecutionTime  float64      `json:"execution_time"`
	ExecutionCount *int         `json:"execution_count"`
	Results        []resultJSON `json:"results"`
	Error          *struct {
		Name      string `json:"name"`
		Value     string `json:"value"`
		Traceback string `json:"traceback"`
	} `json:"error"`
	Truncated bool `json:"truncated"`
}

type resultJSON struct {
	Type string         `json:"type"`
	Data map[string]any `json:"data"`
}

// text returns the MIME bundle's value for mimeType when it is a string.
func (r resultJSON) text(mimeType string) string {
	s, _ := r.Data[mimeType].(string)
	return s
}

type errorJSON struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func (d *daemon) create(tb testing.TB) string {
	tb.Helper()
	var c contextJSON
	if status := d.call(tb, "POST", "/api/v1/contexts", map[string]string{"language": "python"}, &c); status != http.StatusCreated {
		tb.Fatalf("create: status %d", status)
	}
	return c.ContextID
}

// list returns the contexts that exist.
func (d *daemon) list(tb testing.TB) []contextJSON {
	tb.Helper()
	var list struct{ Contexts []contextJSON }
	if status := d.call(tb, "GET", "/api/v1/contexts", nil, &list); status != http.StatusOK {
		tb.Fatalf("list: status %d", status)
	}
	return list.Contexts
}

func (d *daemon) execute(tb testing.TB, id, code string, timeout float64) executeJSON {
	tb.Helper()
	var e executeJSON
	body := map[string]any{"code": code}
	if timeout > 0 {
		body["timeout"] = timeout
	}
	if status := d.call(tb, "POST", "/api/v1/contexts/"+id+"/execute", body, &e); status != http.StatusOK {
		tb.Fatalf("execute %q: status %d", code, status)
	}
	return e
}

// containers counts the containers the daemon owns, running or not, its
// pool's included; with id, only those of that context.
func (d *daemon) containers(tb testing.TB, id ...string) int {
	tb.Helper()
	insts, err := d.rt.List(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, inst := range insts {
		if len(id) == 0 || inst.ContextID == id[0] {
			n++
		}
	}
	return n
}

// waitPoolFull waits until the daemon's warm pools are full, and returns
// how many kernels they hold.
func (d *daemon) waitPoolFull(tb testing.TB) int {
	tb.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var p struct {
			Pools []struct{ Size, Ready int }
		}
		d.call(tb, "GET", "/api/v1/pool", nil, &p)
		size, ready := 0, 0
		for _, pool := range p.Pools {
			size += pool.Size
			ready += pool.Ready
		}
		if ready == size {
			return size
		}
		if time.Now().After(deadline) {
			tb.Fatalf("pool not full: %+v", p)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestEndToEnd(t *testing.T) {
	d := startDaemon(t)

	t.Run("health", func(t *testing.T) {
		for _, path := range []string{"/health", "/readyz"} {
			resp, err := http.Get(d.url + path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "OK" {
				t.Errorf("GET %s = %d %q, want 200 OK", path, resp.StatusCode, b)
			}
		}
	})

	id := d.create(t)

	t.Run("hello", func(t *testing.T) {
		e := d.execute(t, id, `print("Hello from Local Sandbox")`, 30)
		if !e.Success || e.Output.Stdout != "Hello from Local Sandbox\n" || e.Output.Stderr != "" {
			t.Errorf("got %+v", e)
		}
		if e.ExecutionTime <= 0 || e.ExecutionTime > 30 {
			t.Errorf("execution_time = %v", e.ExecutionTime)
		}
	})

	t.Run("carriage returns kept, invalid UTF-8 replaced", func(t *testing.T) {
		// The sleep lets ipykernel's fd reader pass the raw write on.
		e := d.execute(t, id, "import os, sys\nprint('10%\\r20%')\nsys.stdout.flush()\nos.write(1, b'bad \\xff\\n')\nimport time; time.sleep(0.2)", 30)
		if e.Output.Stdout != "10%\r20%\nbad \uFFFD\n" {
			t.Errorf("stdout %q", e.Output.Stdout)
		}
	})

	t.Run("state is kept and private", func(t *testing.T) {
		d.execute(t, id, "x = 100", 0)
		if e := d.execute(t, id, "print(x)", 0); e.Output.Stdout != "100\n" {
			t.Errorf("print(x) = %+v, want 100", e)
		}
		other := d.create(t)
		e := d.execute(t, other, "print(x)", 0)
		if e.Success || e.Error == nil || e.Error.Name != "NameError" {
			t.Errorf("x leaked into another context: %+v", e)
		}
		d.call(t, "DELETE", "/api/v1/contexts/"+other, nil, nil)
	})

	t.Run("exception", func(t *testing.T) {
		e := d.execute(t, id, "1/0", 0)
		if e.Success || e.Error == nil || e.Error.Name != "ZeroDivisionError" {
			t.Fatalf("got %+v", e)
		}
		if !strings.Contains(e.Output.Stderr, "ZeroDivisionError") || strings.Contains(e.Error.Traceback, "\x1b[") {
			t.Errorf("stderr %q, traceback %q", e.Output.Stderr, e.Error.Traceback)
		}
		if e := d.execute(t, id, "print(x + 1)", 0); e.Output.Stdout != "101\n" {
			t.Errorf("context unusable after exception: %+v", e)
		}
	})

	t.Run("timeout interrupts and keeps state", func(t *testing.T) {
		start := time.Now()
		e := d.execute(t, id, "import time; time.sleep(60)", 2)
		took := time.Since(start)
		if e.Success || e.Error == nil || e.Error.Name != "TimeoutError" {
			t.Fatalf("got %+v", e)
		}
		// Interrupting takes a moment; the sleep would take a minute.
		if took > 20*time.Second {
			t.Errorf("timeout of 2s returned after %v", took)
		}
		if e := d.execute(t, id, "print(x)", 0); e.Output.Stdout != "100\n" {
			t.Errorf("after timeout: %+v", e)
		}
	})

	t.Run("matplotlib figure is a PNG result", func(t *testing.T) {
		e := d.execute(t, id, "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()", 60)
		if !e.Success {
			t.Fatalf("got %+v", e)
		}
		var png []byte
		for _, r := range e.Results {
			if s := r.text("image/png"); s != "" {
				png, _ = base64.StdEncoding.DecodeString(strings.TrimSpace(s))
			}
		}
		if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
			t.Errorf("no PNG among results %+v", e.Results)
		}
	})

	t.Run("expression result", func(t *testing.T) {
		e := d.execute(t, id, "x * 2", 0)
		if len(e.Results) != 1 || e.Results[0].Type != "execute_result" || e.Results[0].text("text/plain") != "200" {
			t.Errorf("got %+v", e.Results)
		}
		if e.ExecutionCount == nil || *e.ExecutionCount < 1 {
			t.Errorf("execution_count = %v", e.ExecutionCount)
		}
	})

	t.Run("get and list", func(t *testing.T) {
		var c struct {
			contextJSON
			ExecutionCount int `json:"execution_count"`
		}
		if status := d.call(t, "GET", "/api/v1/contexts/"+id, nil, &c); status != 200 || c.ContextID != id || c.Status != "active" || c.ExecutionCount == 0 {
			t.Errorf("GET = %d %+v", status, c)
		}
		var list struct{ Contexts []contextJSON }
		d.call(t, "GET", "/api/v1/contexts", nil, &list)
		if len(list.Contexts) != 1 || list.Contexts[0].ContextID != id {
			t.Errorf("list = %+v", list)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		var e errorJSON
		if status := d.call(t, "POST", "/api/v1/contexts", map[string]string{"language": "cobol"}, &e); status != 400 || e.Code != "UNSUPPORTED_LANGUAGE" {
			t.Errorf("unknown language: %d %+v", status, e)
		}
		if status := d.call(t, "POST", "/api/v1/contexts/"+id+"/execute", map[string]any{"code": 5}, &e); status != 400 || e.Code != "INVALID_REQUEST" {
			t.Errorf("code as number: %d %+v", status, e)
		}
		if status := d.call(t, "POST", "/api/v1/contexts/"+id+"/execute", map[string]any{"code": "1", "timeout": 1e9}, &e); status != 400 || e.Code != "INVALID_REQUEST" {
			t.Errorf("timeout over the maximum: %d %+v", status, e)
		}
	})

	t.Run("delete", func(t *testing.T) {
		if n := d.containers(t, id); n != 1 {
			t.Fatalf("%d containers of the context before delete", n)
		}
		if status := d.call(t, "DELETE", "/api/v1/contexts/"+id, nil, nil); status != http.StatusNoContent {
			t.Fatalf("delete: %d", status)
		}
		var e errorJSON
		status := d.call(t, "POST", "/api/v1/contexts/"+id+"/execute", map[string]string{"code": "1"}, &e)
		if status != 404 || e.Code != "CONTEXT_NOT_FOUND" || e.Error != "Context not found" {
			t.Errorf("execute after delete: %d %+v", status, e)
		}
		if n := d.containers(t, id); n != 0 {
			t.Errorf("%d containers of the context after delete", n)
		}
	})
}

// Executions on one context run one at a time, in arrival order, and never
// mix their output.
func TestExecutionsOnOneContextTakeTurns(t *testing.T) {
	d := startDaemon(t)
	id := d.create(t)
	d.execute(t, id, "import time\nlog = []", 0)

	const n = 6
	results := make([]executeJSON, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code := fmt.Sprintf("log.append(%d)\nfor j in range(3):\n    print('run%d', j, flush=True)\n    time.sleep(0.05)", i, i)
			results[i] = d.execute(t, id, code, 30)
		}()
		// Let each request arrive before the next.
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	for i, e := range results {
		want := fmt.Sprintf("run%d 0\nrun%d 1\nrun%d 2\n", i, i, i)
		if e.Output.Stdout != want {
			t.Errorf("execution %d printed %q, want %q", i, e.Output.Stdout, want)
		}
	}
	if e := d.execute(t, id, "print(log)", 0); e.Output.Stdout != "[0, 1, 2, 3, 4, 5]\n" {
		t.Errorf("order = %q, want arrival order", e.Output.Stdout)
	}
}

// Under parallel load on several contexts, every output reaches the request
// it belongs to.
func TestParallelOutputsReachTheirRequests(t *testing.T) {
	d := startDaemon(t)
	ids := []string{d.create(t), d.create(t), d.create(t)}
	var wg sync.WaitGroup
	for c, id := range ids {
		for i := range 15 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				token := fmt.Sprintf("ctx%d-req%d", c, i)
				e := d.execute(t, id, fmt.Sprintf("print(%q)\n%q", token, token), 60)
				if e.Output.Stdout != token+"\n" || len(e.Results) != 1 || e.Results[0].text("text/plain") != "'"+token+"'" {
					t.Errorf("%s got stdout %q results %+v", token, e.Output.Stdout, e.Results)
				}
			}()
		}
	}
	wg.Wait()
}

// A kernel that dies answers at once with KernelDied and comes back.
func TestKernelDeathIsReported(t *testing.T) {
	d := startDaemon(t)
	id := d.create(t)
	start := time.Now()
	e := d.execute(t, id, "import os; os._exit(1)", 120)
	if e.Success || e.Error == nil || e.Error.Name != "KernelDied" {
		t.Fatalf("got %+v", e)
	}
	if took := time.Since(start); took > 60*time.Second {
		t.Errorf("death reported after %v; the timeout was 120s", took)
	}
	if e := d.execute(t, id, "print(1)", 60); e.Output.Stdout != "1\n" {
		t.Errorf("after death: %+v", e)
	}
}

// Creating and deleting contexts over and over leaves nothing behind.
func TestCyclesLeaveNothingBehind(t *testing.T) {
	d := startDaemon(t)
	// Warm up lazily started pieces (HTTP keep-alives, Docker client).
	id := d.create(t)
	d.execute(t, id, "1", 0)
	d.call(t, "DELETE", "/api/v1/contexts/"+id, nil, nil)
	pooled := d.waitPoolFull(t)
	goroutines := runtime.NumGoroutine()

	for i := range 20 {
		id := d.create(t)
		if e := d.execute(t, id, fmt.Sprintf("print(%d)", i), 0); e.Output.Stdout != fmt.Sprintf("%d\n", i) {
			t.Errorf("cycle %d: %+v", i, e)
		}
		if status := d.call(t, "DELETE", "/api/v1/contexts/"+id, nil, nil); status != http.StatusNoContent {
			t.Fatalf("cycle %d: delete %d", i, status)
		}
	}

	// What is left is the pool, refilled.
	d.waitPoolFull(t)
	if n := d.containers(t); n != pooled {
		t.Errorf("%d containers left, want the pool's %d", n, pooled)
	}
	// Files beside them (the seccomp profile, on Podman) stay.
	entries, _ := os.ReadDir(d.socketDir)
	if dirs := slices.DeleteFunc(entries, func(e os.DirEntry) bool { return !e.IsDir() }); len(dirs) != pooled {
		t.Errorf("%d socket directories left, want the pool's %d", len(dirs), pooled)
	}
	// Connections wind down asynchronously: poll before judging.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > goroutines+2 && time.Now().Before(deadline) {
		http.DefaultClient.CloseIdleConnections()
		time.Sleep(50 * time.Millisecond)
	}
	if now := runtime.NumGoroutine(); now > goroutines+2 {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d before the cycles, %d after\n%s", goroutines, now, buf[:runtime.Stack(buf, true)])
	}
}

// Stopping the daemon removes every container it made, its pool's too.
func TestShutdownRemovesContexts(t *testing.T) {
	d := startDaemon(t)
	d.create(t)
	d.create(t)
	if n := d.containers(t); n < 2 {
		t.Fatalf("%d containers, want 2 and the pool's", n)
	}
	d.shutdown(t)
	if n := d.containers(t); n != 0 {
		t.Errorf("%d containers left after shutdown", n)
	}
}

// A daemon reachable from other machines needs auth, or says it does not.
func TestNonLoopbackNeedsAuth(t *testing.T) {
	err := run(context.Background(), []string{"--listen", "0.0.0.0:0"}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--insecure") {
		t.Errorf("run on 0.0.0.0 without auth: %v", err)
	}
}

// With an API key, every route but /health wants it.
func TestAPIKey(t *testing.T) {
	d := startDaemon(t, "--api-key", "s3cret", "--pool", "python=0")
	for _, tt := range []struct {
		path, key string
		want      int
	}{
		{"/health", "", 200},
		{"/api/v1/contexts", "", 401},
		{"/api/v1/contexts", "wrong", 401},
		{"/api/v1/contexts", "s3cret", 200},
	} {
		req, _ := http.NewRequest("GET", d.url+tt.path, nil)
		if tt.key != "" {
			req.Header.Set("Authorization", "Bearer "+tt.key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("GET %s with key %q: %d, want %d", tt.path, tt.key, resp.StatusCode, tt.want)
		}
	}
}

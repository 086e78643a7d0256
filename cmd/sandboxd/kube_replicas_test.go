package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sandboxd/sandboxd/internal/apitest"
	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/kubernetes"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// kubeReplicas are replicas of one daemon, run as processes of their own
// so that one can be killed, on the cluster of testenv.Kubeconfig.
type kubeReplicas struct {
	bin, owner, socketDir string
	validator             *apitest.Validator
}

func newKubeReplicas(t *testing.T) *kubeReplicas {
	if testenv.Kubeconfig() == "" {
		t.Skip("replicas serve contexts on Kubernetes alone: set SANDBOXD_TEST_KUBECONFIG")
	}
	k := &kubeReplicas{bin: buildDaemon(t), owner: testenv.Owner(t), socketDir: testenv.SocketDir(t), validator: apitest.New(t)}
	t.Cleanup(func() {
		// Whatever a failed test left behind, whichever replica drove it.
		for _, replica := range []string{"a", "b"} {
			rt := k.runtime(t, replica)
			insts, _ := rt.List(context.Background())
			for _, inst := range insts {
				rt.Remove(context.Background(), inst)
			}
			rt.Close()
		}
	})
	return k
}

// runtime sees the pods replica drives.
func (k *kubeReplicas) runtime(t *testing.T, replica string) *kubernetes.Runtime {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt, err := kubernetes.New(ctx, kubernetes.Config{Kubeconfig: testenv.Kubeconfig(), Owner: k.owner, Replica: replica})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// start runs replica at addr.
func (k *kubeReplicas) start(t *testing.T, replica, addr string) (*daemon, *process) {
	t.Helper()
	// No pool: its kernels would be pods of each replica besides the contexts.
	p := startProcess(t, k.bin, k.owner, k.socketDir, addr, "--kube-replica", replica, "--pool", "python=0")
	return &daemon{url: "http://" + addr, validator: k.validator}, p
}

// Two replicas serve the same contexts: whichever a request reaches, it
// is carried out by the replica that drives the context, with its state.
// When that replica dies, the other takes its contexts over, state and
// all; one restarted under its name keeps them.
func TestKubeReplicas(t *testing.T) {
	k := newKubeReplicas(t)
	addrA := freeAddr(t)
	a, procA := k.start(t, "a", addrA)
	b, _ := k.start(t, "b", freeAddr(t))

	id := a.create(t)
	b.execute(t, id, "x = 41", 0)
	a.execute(t, id, "x += 1", 0)
	if e := b.execute(t, id, "print(x)", 0); e.Output.Stdout != "42\n" {
		t.Fatalf("state across replicas: %+v", e)
	}
	events := b.stream(t, "/api/v1/contexts/"+id+"/execute", map[string]any{"code": "import time\nprint('first', flush=True)\ntime.sleep(2)\nprint(x)"})
	if got := eventNames(events); got != "stdout stdout end" {
		t.Fatalf("events streamed through the other replica: %q", got)
	}
	if events[0].data != `{"text":"first\n"}` || events[2].at.Sub(events[0].at) < time.Second {
		t.Errorf("not streamed as printed: %+v", events)
	}

	// The kernel's websocket, relayed through the other replica.
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(b.url, "http")+"/api/v1/contexts/"+id+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	sendWS(t, conn, "m1", "execute_request", map[string]any{"code": "x"}, map[string]any{})
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for result := ""; result != "42"; {
		var m wsMessage
		if err := conn.ReadJSON(&m); err != nil {
			t.Fatalf("websocket through the other replica: %v", err)
		}
		if m.Header.MsgType == "execute_result" {
			result, _ = m.Content["data"].(map[string]any)["text/plain"].(string)
		}
	}
	conn.Close()

	// Executions reaching both replicas at once run one after another.
	a.execute(t, id, "n = 0", 0)
	var wg sync.WaitGroup
	for i := range 8 {
		d := []*daemon{a, b}[i%2]
		wg.Go(func() {
			if _, status, err := tryExecute(d, id, "t = n\nimport time; time.sleep(0.1)\nn = t + 1"); status != http.StatusOK {
				t.Errorf("concurrent execution: %d %v", status, err)
			}
		})
	}
	wg.Wait()
	if e := a.execute(t, id, "print(n)", 0); e.Output.Stdout != "8\n" {
		t.Errorf("after 8 executions through both replicas: %+v", e)
	}

	// Each lists every context, wherever it was made.
	onB := b.create(t)
	for name, d := range map[string]*daemon{"a": a, "b": b} {
		var ids []string
		for _, c := range d.list(t) {
			ids = append(ids, c.ContextID)
		}
		if !slices.Contains(ids, id) || !slices.Contains(ids, onB) || len(ids) != 2 {
			t.Errorf("replica %s lists %v, want %s and %s", name, ids, id, onB)
		}
	}
	// Deleted through the replica that does not drive it.
	doomed := a.create(t)
	if status := b.call(t, "DELETE", "/api/v1/contexts/"+doomed, nil, nil); status != http.StatusNoContent {
		t.Fatalf("delete through the other replica: %d", status)
	}
	if status := a.call(t, "GET", "/api/v1/contexts/"+doomed, nil, nil); status != http.StatusNotFound {
		t.Errorf("deleted context on its own replica: %d", status)
	}

	direct, forwarded := p50s(t, a, b, id)
	t.Logf("execute, p50 of 50: direct %v, through the other replica %v", direct, forwarded)

	// a dies: b takes over its contexts once a's Lease runs out; the one
	// nobody asks for too, by the sweep.
	swept := a.create(t)
	a.execute(t, swept, "y = 'kept'", 0)
	procA.stop(syscall.SIGKILL)
	died := time.Now()
	waitExecute(t, b, id, "print(x)", "42\n", 90*time.Second)
	t.Logf("taken over %v after the kill", time.Since(died).Round(time.Second))
	deadline := time.Now().Add(60 * time.Second)
	for !slices.ContainsFunc(b.list(t), func(c contextJSON) bool { return c.ContextID == swept && c.Status == "active" }) {
		if time.Now().After(deadline) {
			t.Fatalf("the context nobody asked for was not taken over: %+v", b.list(t))
		}
		time.Sleep(500 * time.Millisecond)
	}
	if e := b.execute(t, swept, "print(y)", 0); e.Output.Stdout != "kept\n" {
		t.Errorf("the swept context: %+v", e)
	}
	rtB := k.runtime(t, "b")
	defer rtB.Close()
	insts, err := rtB.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var podsOfB []string
	for _, inst := range insts {
		if inst.Labels[contexts.LabelRole] == "" { // not a pooled kernel
			podsOfB = append(podsOfB, inst.ContextID)
		}
	}
	sort.Strings(podsOfB)
	want := []string{id, onB, swept}
	sort.Strings(want)
	if !slices.Equal(podsOfB, want) {
		t.Errorf("pods labelled b: %v, want %v", podsOfB, want)
	}

	// A replica killed and restarted under its name keeps its contexts:
	// it is back before its Lease runs out, so b leaves them to it.
	a, procA = k.start(t, "a", addrA)
	again := a.create(t)
	a.execute(t, again, "z = 7", 0)
	procA.stop(syscall.SIGKILL)
	a, _ = k.start(t, "a", addrA)
	waitStatus(t, a, again, "active")
	if e := b.execute(t, again, "print(z)", 0); e.Output.Stdout != "7\n" {
		t.Errorf("after a restart of its replica: %+v", e)
	}
	rtA := k.runtime(t, "a")
	defer rtA.Close()
	insts, _ = rtA.List(context.Background())
	if !slices.ContainsFunc(insts, func(inst contexts.Instance) bool { return inst.ContextID == again }) {
		t.Errorf("pods labelled a after its restart: %+v", insts)
	}
}

// p50s are the median times of 50 small executions in id through its own
// replica and through other, taken in turns so that both see the same
// load.
func p50s(t *testing.T, own, other *daemon, id string) (direct, forwarded time.Duration) {
	t.Helper()
	var times [2][]time.Duration
	for range 50 {
		for i, d := range []*daemon{own, other} {
			start := time.Now()
			d.execute(t, id, "1", 0)
			times[i] = append(times[i], time.Since(start))
		}
	}
	for i := range times {
		slices.Sort(times[i])
	}
	return times[0][25], times[1][25]
}

// waitExecute runs code in id through d until it prints want: while the
// replica that drove id is dead and its Lease runs, it fails.
func waitExecute(t *testing.T, d *daemon, id, code, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		e, status, err := tryExecute(d, id, code)
		if status == http.StatusOK {
			if e.Output.Stdout != want {
				t.Fatalf("execute %q after the takeover: %+v, want %q", code, e, want)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not taken over in %v: %d %v", timeout, status, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// tryExecute runs code in id through d, from any goroutine.
func tryExecute(d *daemon, id, code string) (executeJSON, int, error) {
	var e executeJSON
	body, _ := json.Marshal(map[string]any{"code": code})
	resp, err := http.Post(d.url+"/api/v1/contexts/"+id+"/execute", "application/json", bytes.NewReader(body))
	if err != nil {
		return e, 0, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&e)
	return e, resp.StatusCode, err
}

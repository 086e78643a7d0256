package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// createPooled creates a context with body and returns its id and whether
// it came from the pool.
func (d *daemon) createPooled(tb testing.TB, body any) (id, pool string) {
	tb.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(d.url+"/api/v1/contexts", "application/json", bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var c contextJSON
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || resp.StatusCode != http.StatusCreated {
		tb.Fatalf("create: %d %v", resp.StatusCode, err)
	}
	return c.ContextID, resp.Header.Get("Sandboxd-Pool")
}

// A context from the warm pool gets its own working dir and env like a
// cold one; the pool refills; creation past it still works, cold; and
// --max-contexts holds, the pool's kernels not counted, with creates
// waiting up to --full-wait for room.
func TestWarmPool(t *testing.T) {
	d := startDaemon(t, "--pool", "python=1", "--max-contexts", "3", "--full-wait", "3s")
	d.waitPoolFull(t)

	body := map[string]any{"working_dir": "/workspace/w", "env": map[string]string{"A": "1"}}
	const probe = "import os; print(os.getcwd(), os.environ['A'])"
	warm, pool := d.createPooled(t, body)
	if pool != "hit" {
		t.Errorf("first create: Sandboxd-Pool %q, want hit", pool)
	}
	// The pool is empty now: starting a kernel takes far longer than this.
	cold, pool := d.createPooled(t, body)
	if pool != "miss" {
		t.Errorf("create on an empty pool: Sandboxd-Pool %q, want miss", pool)
	}
	for _, id := range []string{warm, cold} {
		if e := d.execute(t, id, probe, 0); e.Output.Stdout != "/workspace/w 1\n" {
			t.Errorf("%s: %+v", id, e)
		}
	}
	d.execute(t, warm, "x = 1", 0)
	if e := d.execute(t, cold, "print('x' in globals())", 0); e.Output.Stdout != "False\n" {
		t.Errorf("state shared between pooled contexts: %+v", e)
	}

	d.waitPoolFull(t)
	third, pool := d.createPooled(t, nil)
	if pool != "hit" {
		t.Errorf("create after refill: Sandboxd-Pool %q, want hit", pool)
	}
	if e := d.execute(t, third, "import os; print(os.getcwd())", 0); e.Output.Stdout != "/workspace\n" {
		t.Errorf("default working dir: %+v", e)
	}

	// Full: a create waits --full-wait for room, then gets 429.
	var e errorJSON
	if status := d.call(t, "POST", "/api/v1/contexts", nil, &e); status != http.StatusTooManyRequests || e.Code != "TOO_MANY_CONTEXTS" {
		t.Errorf("create past --max-contexts: %d %+v", status, e)
	}
	// One waiting gets the room a delete makes.
	created := make(chan string)
	go func() {
		id, _ := d.createPooled(t, nil)
		created <- id
	}()
	time.Sleep(500 * time.Millisecond) // let it start waiting
	d.call(t, "DELETE", "/api/v1/contexts/"+warm, nil, nil)
	if id := <-created; id == "" {
		t.Error("no context for the waiting create")
	}
}

// A context idle past --idle-ttl is removed with its container; one in use
// is not.
func TestIdleContextsAreRemoved(t *testing.T) {
	d := startDaemon(t, "--idle-ttl", "3s", "--pool", "python=0")
	idle, used := d.create(t), d.create(t)
	deadline := time.Now().Add(time.Minute)
	for {
		d.execute(t, used, "1", 0)
		var e errorJSON
		if d.call(t, "GET", "/api/v1/contexts/"+idle, nil, &e) == http.StatusNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("idle context still there after a minute")
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The context leaves the list as its removal starts; its container
	// goes a moment later.
	for deadline := time.Now().Add(time.Minute); d.containers(t, idle) != 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d containers of the idle context left after a minute", d.containers(t, idle))
		}
	}
	if status := d.call(t, "GET", "/api/v1/contexts/"+used, nil, nil); status != http.StatusOK {
		t.Errorf("context in use: %d", status)
	}
}

// A create whose client has gone leaves the pool as it was: its kernel is
// neither handed out nor thrown away because the request's checks were
// cancelled.
func TestPoolSurvivesAbandonedCreates(t *testing.T) {
	d := startDaemon(t, "--pool", "python=1")
	const abandoned = 5
	body := `{"language": "python"}`
	// A create can complete before the daemon sees its client gone, and
	// then rightly takes the pooled kernel: such a round proves nothing.
	for round := 1; ; round++ {
		d.waitPoolFull(t)
		pooled := d.containerIDs(t)
		creates, ok := d.metric(t, "sandboxd_context_creates_total"), d.metric(t, `sandboxd_context_creates_total{result="ok"}`)
		for range abandoned {
			conn, err := net.Dial("tcp", strings.TrimPrefix(d.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			// The request whole, then gone at once.
			fmt.Fprintf(conn, "POST /api/v1/contexts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			conn.Close()
		}
		deadline := time.Now().Add(time.Minute)
		for d.metric(t, "sandboxd_context_creates_total") < creates+abandoned {
			if time.Now().After(deadline) {
				t.Fatalf("the daemon answered %v of %d creates", d.metric(t, "sandboxd_context_creates_total")-creates, abandoned)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if d.metric(t, `sandboxd_context_creates_total{result="ok"}`) > ok {
			if round == 5 {
				t.Fatal("in every round, a create completed before its client was seen gone")
			}
			continue
		}
		if now := d.containerIDs(t); !slices.Equal(now, pooled) {
			t.Errorf("round %d: containers %q, before the creates %q", round, now, pooled)
		}
		break
	}
	if _, pool := d.createPooled(t, nil); pool != "hit" {
		t.Errorf("create after the abandoned ones: Sandboxd-Pool %q, want hit", pool)
	}
}

// containerIDs returns the ids of the containers the daemon owns, sorted.
func (d *daemon) containerIDs(tb testing.TB) []string {
	tb.Helper()
	insts, err := d.rt.List(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	var ids []string
	for _, inst := range insts {
		ids = append(ids, inst.ID)
	}
	slices.Sort(ids)
	return ids
}

// metric returns the sum of the samples of the named metric on /metrics.
func (d *daemon) metric(tb testing.TB, name string) float64 {
	tb.Helper()
	resp, err := http.Get(d.url + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok && (strings.HasPrefix(rest, "{") || strings.HasPrefix(rest, " ")) {
			v, err := strconv.ParseFloat(rest[strings.LastIndexByte(rest, ' ')+1:], 64)
			if err != nil {
				tb.Fatalf("%s: %v", line, err)
			}
			sum += v
		}
	}
	return sum
}

package main

import (
	"bytes"
	"encoding/json"
	"net/http"
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
	if n := d.containers(t, idle); n != 0 {
		t.Errorf("%d containers of the idle context left", n)
	}
	if status := d.call(t, "GET", "/api/v1/contexts/"+used, nil, nil); status != http.StatusOK {
		t.Errorf("context in use: %d", status)
	}
}

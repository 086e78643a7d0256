package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

type historyJSON struct {
	Entries []struct {
		ID        int64     `json:"id"`
		Kind      string    `json:"kind"`
		StartedAt time.Time `json:"started_at"`
		Duration  float64   `json:"duration"`
		Code      *string   `json:"code"`
		Command   *string   `json:"command"`
		Success   bool      `json:"success"`
		Output    struct{ Stdout, Stderr string }
		Results   []resultJSON `json:"results"`
		Error     *struct{ Name, Value, Traceback string }
		ExitCode  *int `json:"exit_code"`
		Truncated bool `json:"truncated"`
	} `json:"entries"`
	NextBefore *int64 `json:"next_before"`
	Dropped    int64  `json:"dropped"`
}

func (d *daemon) history(tb testing.TB, id, query string) historyJSON {
	tb.Helper()
	var h historyJSON
	if status := d.call(tb, "GET", "/api/v1/contexts/"+id+"/history"+query, nil, &h); status != http.StatusOK {
		tb.Fatalf("history %s: status %d", query, status)
	}
	return h
}

// events subscribes to /api/v1/events and passes on each event until ctx
// ends.
func (d *daemon) events(tb testing.TB, ctx context.Context) <-chan sseEvent {
	tb.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", d.url+"/api/v1/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		tb.Fatalf("events: status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ch := make(chan sseEvent, 1000)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		readSSE(resp.Body, func(e sseEvent) { ch <- e })
	}()
	return ch
}

// Executions that print, raise and display, a command and a large output
// appear in the context's history in order, and as events on the stream.
func TestHistoryAndEvents(t *testing.T) {
	d := startDaemon(t, "--pool", "python=0", "--history-bytes", "1m")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	events := d.events(t, ctx)

	id := d.create(t)
	d.execute(t, id, "print('hello')", 0)
	d.execute(t, id, "1/0", 0)
	d.execute(t, id, "from IPython.display import display, HTML\ndisplay(HTML('<b>hi</b>'))", 0)
	if c := d.command(t, id, map[string]any{"command": "echo out; echo err >&2; exit 3"}); c.ExitCode != 3 {
		t.Fatalf("command: %+v", c)
	}

	h := d.history(t, id, "")
	if len(h.Entries) != 4 || h.NextBefore != nil || h.Dropped != 0 {
		t.Fatalf("history: %d entries, next_before %v, dropped %d", len(h.Entries), h.NextBefore, h.Dropped)
	}
	for i, e := range h.Entries {
		if e.ID != int64(i+1) || time.Since(e.StartedAt) > time.Minute || e.Duration <= 0 {
			t.Errorf("entry %d: id %d, started_at %v, duration %v", i, e.ID, e.StartedAt, e.Duration)
		}
	}
	printed, raised, shown, command := h.Entries[0], h.Entries[1], h.Entries[2], h.Entries[3]
	if printed.Kind != "execution" || *printed.Code != "print('hello')" || !printed.Success || printed.Output.Stdout != "hello\n" || printed.Error != nil || printed.ExitCode != nil {
		t.Errorf("print: %+v", printed)
	}
	if raised.Success || raised.Error == nil || raised.Error.Name != "ZeroDivisionError" || raised.Error.Value != "division by zero" {
		t.Errorf("raise: %+v", raised)
	}
	if len(shown.Results) != 1 || shown.Results[0].Type != "display_data" || shown.Results[0].text("text/html") != "<b>hi</b>" {
		t.Errorf("display: %+v", shown)
	}
	if command.Kind != "command" || command.Code != nil || *command.Command != "echo out; echo err >&2; exit 3" || command.Success ||
		*command.ExitCode != 3 || command.Output.Stdout != "out\n" || command.Output.Stderr != "err\n" {
		t.Errorf("command: %+v", command)
	}

	// Paging back from the newest.
	page := d.history(t, id, "?limit=3")
	if len(page.Entries) != 3 || page.Entries[0].ID != 2 || page.NextBefore == nil || *page.NextBefore != 2 {
		t.Fatalf("newest page: %+v", page)
	}
	page = d.history(t, id, fmt.Sprintf("?limit=3&before=%d", *page.NextBefore))
	if len(page.Entries) != 1 || page.Entries[0].ID != 1 || page.NextBefore != nil {
		t.Fatalf("second page: %+v", page)
	}

	// An output larger than --history-bytes is cut to a quarter of it,
	// leaving room for the entries before it.
	d.execute(t, id, "print('x' * 3_000_000)", 0)
	h = d.history(t, id, "")
	big := h.Entries[len(h.Entries)-1]
	if big.ID != 5 || !big.Truncated || len(big.Output.Stdout) > 1<<18 || len(big.Output.Stdout) < 1<<17 || !strings.HasPrefix(big.Output.Stdout, "xxxx") {
		t.Errorf("big output: id %d, truncated %v, %d bytes of stdout", big.ID, big.Truncated, len(big.Output.Stdout))
	}
	if len(h.Entries) != 5 || h.Dropped != 0 {
		t.Errorf("%d entries kept, %d dropped; want all 5", len(h.Entries), h.Dropped)
	}
	var e errorJSON
	if status := d.call(t, "GET", "/api/v1/contexts/"+id+"/history?limit=0", nil, &e); status != http.StatusBadRequest || e.Code != "INVALID_REQUEST" {
		t.Errorf("limit=0: %d %+v", status, e)
	}

	if status := d.call(t, "DELETE", "/api/v1/contexts/"+id, nil, nil); status != http.StatusNoContent {
		t.Fatalf("delete: %d", status)
	}
	if status := d.call(t, "GET", "/api/v1/contexts/"+id+"/history", nil, &e); status != http.StatusNotFound || e.Code != "CONTEXT_NOT_FOUND" {
		t.Errorf("history of a deleted context: %d %+v", status, e)
	}

	want := []string{"context.created"}
	for range 5 {
		want = append(want, "execution.started", "execution.finished")
	}
	want = append(want, "context.deleted")
	var got []string
	timeout := time.After(30 * time.Second)
	for len(got) < len(want) {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the event stream ended after %v", got)
			}
			var head struct {
				ContextID string `json:"context_id"`
				Kind      string `json:"kind"`
				Entry     *struct {
					ID   int64  `json:"id"`
					Kind string `json:"kind"`
				} `json:"entry"`
			}
			if err := json.Unmarshal([]byte(ev.data), &head); err != nil {
				t.Fatalf("event %s: %v", ev.name, err)
			}
			if head.ContextID != id {
				t.Fatalf("event %s of context %q, want %q", ev.name, head.ContextID, id)
			}
			if ev.name == "execution.finished" && head.Entry.ID != int64(len(got)/2) {
				t.Errorf("finished event of entry %d after %v", head.Entry.ID, got)
			}
			got = append(got, ev.name)
		case <-timeout:
			t.Fatalf("events so far %v, want %v", got, want)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

// A context's history survives a restart of the daemon, as the context
// does, and goes with the context.
func TestHistorySurvivesRestart(t *testing.T) {
	d := newProcDaemon(t)
	args := []string{"--pool", "python=0"}

	first := d.start(t, args...)
	id := d.create(t)
	d.execute(t, id, "x = 41; print('before')", 0)
	d.command(t, id, map[string]any{"command": "echo cmd"})
	first.stop(syscall.SIGKILL)

	second := d.start(t, args...)
	waitStatus(t, d.daemon, id, "active") // taken over in the background
	d.execute(t, id, "print(x + 1)", 0)
	h := d.history(t, id, "")
	if len(h.Entries) != 3 || h.Entries[0].Output.Stdout != "before\n" || h.Entries[1].Output.Stdout != "cmd\n" ||
		h.Entries[2].ID != 3 || h.Entries[2].Output.Stdout != "42\n" {
		t.Fatalf("history after a restart: %+v", h)
	}
	if status := d.call(t, "DELETE", "/api/v1/contexts/"+id, nil, nil); status != http.StatusNoContent {
		t.Fatalf("delete: %d", status)
	}
	if left, _ := os.ReadDir(d.socketDir); hasHistory(left) {
		t.Errorf("a history file outlived its context: %v", left)
	}
	second.stop(os.Interrupt)
}

func hasHistory(files []os.DirEntry) bool {
	for _, f := range files {
		if strings.Contains(f.Name(), ".history.") {
			return true
		}
	}
	return false
}

package mcp

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// initialize starts an MCP session over raw HTTP, as any client does, and
// returns the status and the session id.
func initialize(t *testing.T, url string) (int, string, string) {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}`
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct{ Code string }
	if resp.Header.Get("Content-Type") == "application/json" {
		json.NewDecoder(resp.Body).Decode(&e)
	}
	return resp.StatusCode, resp.Header.Get("Mcp-Session-Id"), e.Code
}

func endSession(t *testing.T, url, id string) int {
	t.Helper()
	req, _ := http.NewRequest("DELETE", url, nil)
	req.Header.Set("Mcp-Session-Id", id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestSessionLimits(t *testing.T) {
	const idle = 2 * time.Second
	h := NewHTTPHandler(NewServer(nil, "test"), slog.New(slog.DiscardHandler), 0, SessionLimits{Max: 3, Idle: idle})
	srv := httptest.NewServer(h)
	defer srv.Close()

	var ids []string
	for i := range 3 {
		status, id, _ := initialize(t, srv.URL)
		if status != http.StatusOK || id == "" {
			t.Fatalf("session %d: status %d, id %q", i, status, id)
		}
		ids = append(ids, id)
	}
	if status, id, code := initialize(t, srv.URL); status != http.StatusTooManyRequests || code != "TOO_MANY_SESSIONS" || id != "" {
		t.Fatalf("a session past the cap: status %d, code %q, id %q", status, code, id)
	}
	if status := endSession(t, srv.URL, ids[0]); status != http.StatusNoContent {
		t.Fatalf("end a session: %d", status)
	}
	if status, _, _ := initialize(t, srv.URL); status != http.StatusOK {
		t.Fatalf("a session once one ended: %d", status)
	}

	// Idle sessions end by themselves, and make room. A refused initialize
	// touches no session, so asking again does not keep them alive.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if status, _, _ := initialize(t, srv.URL); status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no room for a session a minute after the others went idle")
		}
	}
	for i := range 2 {
		if status, _, _ := initialize(t, srv.URL); status != http.StatusOK {
			t.Fatalf("session %d after the others idled out: %d", i, status)
		}
	}
	if status := endSession(t, srv.URL, ids[1]); status != http.StatusNotFound {
		t.Errorf("an idle session still answers: %d", status)
	}
}

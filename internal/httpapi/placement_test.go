package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// fakePlacement places every id in remotes at its URL, and the rest here.
type fakePlacement struct {
	remotes map[string]*url.URL
	peers   []*url.URL

	mu      sync.Mutex
	located []string
}

func (p *fakePlacement) Locate(_ context.Context, id string) (*url.URL, error) {
	p.mu.Lock()
	p.located = append(p.located, id)
	p.mu.Unlock()
	return p.remotes[id], nil
}

func (p *fakePlacement) Peers(context.Context) ([]*url.URL, error) { return p.peers, nil }

// peerReplica is another replica: it answers every request with what it
// got, and lists answer.
func peerReplica(t *testing.T, list string) *url.URL {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && (r.URL.Path == "/api/v1/contexts" || r.URL.Path == "/sandboxes") {
			if r.Header.Get(headerForwarded) == "" {
				t.Errorf("a list asked of a peer is not marked as forwarded")
			}
			io.WriteString(w, list)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"path": r.URL.Path, "forwarded": r.Header.Get(headerForwarded), "host": r.Host})
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u
}

func TestForwardUnheld(t *testing.T) {
	peer := peerReplica(t, "")
	place := &fakePlacement{remotes: map[string]*url.URL{"remote": peer, "sbx-remote": peer}}
	fake := &fakeService{
		get: func(id string) (contexts.Info, error) {
			if id == "local" {
				return sampleInfo(), nil
			}
			return notFound(id)
		},
	}
	h := NewHandler(slog.New(slog.DiscardHandler), fake, Config{MaxBodyBytes: maxBody, Registry: prometheus.NewRegistry(), Placement: place})
	srv := httptest.NewServer(h)
	defer srv.Close()

	for _, tc := range []struct {
		name, method, path string
		forwardedAlready   bool
		wantPeer           bool
		wantStatus         int
	}{
		{"execute on another replica's context", http.MethodPost, "/api/v1/contexts/remote/execute", false, true, http.StatusOK},
		{"its websocket route", http.MethodGet, "/api/v1/contexts/remote/ws", false, true, http.StatusOK},
		{"a sandbox's route", http.MethodPost, "/sandboxes/sbx-remote/contexts/c/execute", false, true, http.StatusOK},
		{"a sandbox's data route", http.MethodGet, "/sandboxes/sbx-remote/filesystem", false, true, http.StatusOK},
		{"a context held here", http.MethodGet, "/api/v1/contexts/local", false, false, http.StatusOK},
		{"a context nobody drives", http.MethodGet, "/api/v1/contexts/none", false, false, http.StatusNotFound},
		{"a request forwarded already", http.MethodGet, "/api/v1/contexts/remote", true, false, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader("{}"))
			req.Header.Set("Content-Type", "application/json")
			if tc.forwardedAlready {
				req.Header.Set(headerForwarded, "1")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			var got map[string]string
			json.NewDecoder(resp.Body).Decode(&got)
			atPeer := got["path"] == tc.path
			if atPeer != tc.wantPeer {
				t.Fatalf("reached the peer: %v, want %v (%v)", atPeer, tc.wantPeer, got)
			}
			if atPeer && (got["forwarded"] == "" || got["host"] != strings.TrimPrefix(srv.URL, "http://")) {
				t.Errorf("the peer got forwarded=%q host=%q: want the mark, and the client's Host", got["forwarded"], got["host"])
			}
		})
	}
	for _, id := range place.located {
		if id == "local" {
			t.Errorf("looked for a context held here")
		}
	}
}

func TestListIncludesPeers(t *testing.T) {
	a := peerReplica(t, `{"contexts":[{"context_id":"a1","created_at":"2025-01-15T09:00:00Z"},{"context_id":"`+ctxID+`","created_at":"2025-01-15T10:30:00Z"}]}`)
	b := peerReplica(t, `{"contexts":[{"context_id":"b1","created_at":"2025-01-15T11:00:00Z"}]}`)
	place := &fakePlacement{peers: []*url.URL{a, b}}
	fake := &fakeService{list: func() []contexts.Info { return []contexts.Info{sampleInfo()} }}
	h := NewHandler(slog.New(slog.DiscardHandler), fake, Config{MaxBodyBytes: maxBody, Registry: prometheus.NewRegistry(), Placement: place})
	srv := httptest.NewServer(h)
	defer srv.Close()

	ids := func(header string) []string {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/contexts", nil)
		if header != "" {
			req.Header.Set(headerForwarded, header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var list listContextsResponse
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, c := range list.Contexts {
			ids = append(ids, c.ContextID)
		}
		return ids
	}
	if got, want := strings.Join(ids(""), ","), "a1,"+ctxID+",b1"; got != want {
		t.Errorf("list = %s, want %s: every replica's, each once, oldest first", got, want)
	}
	if got := strings.Join(ids("1"), ","); got != ctxID {
		t.Errorf("list asked by a peer = %s, want this replica's alone", got)
	}
}

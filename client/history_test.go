package client

import (
	"io"
	"net/http"
	"testing"
)

func TestHistoryAndEvents(t *testing.T) {
	c := fakeServer(t, map[string]http.HandlerFunc{
		"GET /api/v1/contexts/" + ctxID + "/history": func(w http.ResponseWriter, r *http.Request) {
			if q := r.URL.RawQuery; q != "before=9&limit=2" {
				t.Errorf("query = %q", q)
			}
			writeJSON(w, http.StatusOK, `{"entries":[{"id":7,"kind":"command","started_at":"2026-11-30T03:04:05.123Z","duration":0.5,"command":"ls","success":true,"output":{"stdout":"a","stderr":""},"results":[],"error":null,"exit_code":0,"truncated":false}],"next_before":7,"dropped":6}`)
		},
		"GET /api/v1/events": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, ": keep-alive\n\nevent: context.deleted\ndata: {\"context_id\":\""+ctxID+"\"}\n\n")
		},
	})
	p, err := c.History(t.Context(), ctxID, 9, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Entries) != 1 || p.Entries[0].Command != "ls" || *p.Entries[0].ExitCode != 0 || *p.NextBefore != 7 || p.Dropped != 6 {
		t.Fatalf("page = %+v", p)
	}
	events, err := c.Events(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []LiveEvent
	for e := range events {
		got = append(got, e)
	}
	if len(got) != 1 || got[0].Type != "context.deleted" || got[0].ContextID != ctxID {
		t.Fatalf("events = %+v", got)
	}
}

package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/kernel"
)

func sampleEntries() []contexts.Entry {
	started := time.Date(2026, 11, 30, 3, 4, 5, 123e6, time.UTC)
	return []contexts.Entry{
		{ID: 12, Kind: contexts.KindExecution, StartedAt: started, Duration: 12300 * time.Microsecond, Code: "1/0",
			Stderr: "boom", Error: &kernel.Error{Name: "ZeroDivisionError", Value: "division by zero", Traceback: "tb"},
			Outputs: []kernel.Output{{Type: "display_data", Data: map[string]json.RawMessage{"image/png": json.RawMessage(`"iVBO"`)}, Metadata: json.RawMessage(`{}`)}}},
		{ID: 13, Kind: contexts.KindCommand, StartedAt: started, Duration: time.Second, Command: "ls", Success: true, Stdout: "a\n", Truncated: true},
	}
}

func TestHistory(t *testing.T) {
	var gotBefore int64
	var gotLimit int
	fake := &fakeService{history: func(id string, before int64, limit int) (contexts.HistoryPage, error) {
		if id != ctxID {
			return contexts.HistoryPage{}, contexts.Errorf(contexts.CodeNotFound, "Context not found")
		}
		gotBefore, gotLimit = before, limit
		return contexts.HistoryPage{Entries: sampleEntries(), NextBefore: 12, Dropped: 3}, nil
	}}
	s := newTestServer(t, fake)
	path := "/api/v1/contexts/" + ctxID + "/history"

	got := s.do(t, request{method: http.MethodGet, path: path})
	checkResponse(t, got, want{status: http.StatusOK, contentType: ctJSON, json: `{"entries":[
		{"id":12,"kind":"execution","started_at":"2026-11-30T03:04:05.123Z","duration":0.0123,"code":"1/0","success":false,
		 "output":{"stdout":"","stderr":"boom"},"results":[{"type":"display_data","data":{"image/png":"iVBO"},"metadata":{}}],
		 "error":{"name":"ZeroDivisionError","value":"division by zero","traceback":"tb"},"truncated":false},
		{"id":13,"kind":"command","started_at":"2026-11-30T03:04:05.123Z","duration":1,"command":"ls","success":true,
		 "output":{"stdout":"a\n","stderr":""},"results":[],"error":null,"exit_code":0,"truncated":true}],
		"next_before":12,"dropped":3}`})
	if gotBefore != 0 || gotLimit != 50 {
		t.Errorf("before %d, limit %d; want 0 and the default 50", gotBefore, gotLimit)
	}
	s.do(t, request{method: http.MethodGet, path: path + "?before=12&limit=500"})
	if gotBefore != 12 || gotLimit != 500 {
		t.Errorf("before %d, limit %d; want 12 and 500", gotBefore, gotLimit)
	}

	for _, q := range []string{"limit=0", "limit=501", "limit=x", "limit=-1", "before=0", "before=-3", "before=1.5"} {
		got := s.do(t, request{method: http.MethodGet, path: path + "?" + q})
		checkResponse(t, got, want{status: http.StatusBadRequest, contentType: ctJSON, errCode: contexts.CodeInvalid, errMsg: strings.Split(q, "=")[0]})
	}
	got = s.do(t, request{method: http.MethodGet, path: "/api/v1/contexts/ctx-00000000-0000-4000-8000-00000000dead/history"})
	checkResponse(t, got, want{status: http.StatusNotFound, contentType: ctJSON, errObj: errBody("Context not found", contexts.CodeNotFound)})
}

func TestEventsStream(t *testing.T) {
	events := make(chan contexts.Event, 10)
	info := sampleInfo()
	entry := sampleEntries()[1]
	events <- contexts.Event{Type: contexts.EventContextCreated, ContextID: info.ID, Info: &info}
	events <- contexts.Event{Type: contexts.EventExecutionStarted, ContextID: info.ID, Kind: contexts.KindCommand, Command: "ls"}
	events <- contexts.Event{Type: contexts.EventExecutionFinished, ContextID: info.ID, Entry: &entry}
	events <- contexts.Event{Type: contexts.EventContextDeleted, ContextID: info.ID}
	close(events) // as when the subscriber falls behind: the stream ends
	s := newTestServer(t, &fakeService{events: events})

	got := s.do(t, request{method: http.MethodGet, path: "/api/v1/events"})
	if got.status != http.StatusOK || got.header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q", got.status, got.header.Get("Content-Type"))
	}
	body := string(got.body)
	for _, want := range []string{
		"event: context.created\ndata: {\"context_id\":\"" + info.ID + "\"",
		"event: execution.started\ndata: {\"context_id\":\"" + info.ID + "\",\"kind\":\"command\",\"command\":\"ls\"}\n\n",
		"event: execution.finished\ndata: {\"context_id\":\"" + info.ID + "\",\"entry\":{\"id\":13,\"kind\":\"command\"",
		"event: context.deleted\ndata: {\"context_id\":\"" + info.ID + "\"}\n\n",
	} {
		i := strings.Index(body, want)
		if i < 0 {
			t.Fatalf("stream lacks %q:\n%s", want, body)
		}
		body = body[i:]
	}
}

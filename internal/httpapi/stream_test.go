package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/kernel"
)

// sseEvent is one Server-Sent Event: its name and its data.
type sseEvent struct {
	Event string
	Data  string
}

// parseSSE splits a text/event-stream body into events, skipping comments.
func parseSSE(tb testing.TB, body []byte) []sseEvent {
	tb.Helper()
	var events []sseEvent
	for _, block := range strings.Split(string(body), "\n\n") {
		if block == "" || strings.HasPrefix(block, ":") {
			continue
		}
		var ev sseEvent
		for _, line := range strings.Split(block, "\n") {
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.Event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.Data = strings.TrimPrefix(line, "data: ")
			default:
				tb.Errorf("unexpected line %q in event stream:\n%s", line, body)
			}
		}
		events = append(events, ev)
	}
	if !strings.HasSuffix(string(body), "\n\n") {
		tb.Errorf("event stream does not end with a blank line: %q", body)
	}
	return events
}

func TestExecuteStream(t *testing.T) {
	out := kernel.Output{
		Type:     "execute_result",
		Data:     map[string]json.RawMessage{"text/plain": json.RawMessage(`"2"`)},
		Metadata: json.RawMessage(`{}`),
	}
	kerr := &kernel.Error{Name: "ValueError", Value: "bad", Traceback: "ValueError: bad"}
	// emitAll sends output as it arrives, then returns exe or err.
	emitAll := func(exe contexts.Execution, err error) func(context.Context, string, contexts.ExecuteRequest) (contexts.Execution, error) {
		return func(_ context.Context, _ string, req contexts.ExecuteRequest) (contexts.Execution, error) {
			if req.OnEvent == nil {
				return contexts.Execution{}, errors.New("no OnEvent for a streamed execution")
			}
			req.OnEvent(kernel.Event{Type: "stdout", Text: "a < b\n"})
			req.OnEvent(kernel.Event{Type: "stderr", Text: "warn\n"})
			req.OnEvent(kernel.Event{Type: "result", Output: &out})
			req.OnEvent(kernel.Event{Type: "error", Error: kerr})
			return exe, err
		}
	}
	streamed := []sseEvent{
		{"stdout", `{"text":"a < b\n"}`},
		{"stderr", `{"text":"warn\n"}`},
		{"result", `{"type":"execute_result","data":{"text/plain":"2"},"metadata":{}}`},
		{"error", `{"name":"ValueError","value":"bad","traceback":"ValueError: bad"}`},
	}
	exe := contexts.Execution{
		Result: kernel.Result{
			Stdout: "a < b\n", Stderr: "warn\nValueError: bad\n", Outputs: []kernel.Output{out},
			Error: kerr, ExecutionCount: intPtr(4), Status: "error",
		},
		Duration: 250 * time.Millisecond,
	}
	found := func(string) (contexts.Info, error) { return sampleInfo(), nil }

	tests := []struct {
		name     string
		accept   string
		id       string
		body     string
		get      func(string) (contexts.Info, error)
		execute  func(context.Context, string, contexts.ExecuteRequest) (contexts.Execution, error)
		want     want       // for a plain answer; status 0 for a stream
		events   []sseEvent // for a stream
		wantExec bool
	}{
		{
			name:    "output then end",
			accept:  "text/event-stream",
			body:    `{"code":"print('a < b')","timeout":2,"env":{"A":"1"}}`,
			get:     found,
			execute: emitAll(exe, nil),
			events: append(streamed[:len(streamed):len(streamed)], sseEvent{"end", `{
				"output":{"stdout":"a < b\n","stderr":"warn\nValueError: bad\n"},
				"success":false,"execution_time":0.25,"execution_count":4,
				"results":[{"type":"execute_result","data":{"text/plain":"2"},"metadata":{}}],
				"error":{"name":"ValueError","value":"bad","traceback":"ValueError: bad"}}`}),
			wantExec: true,
		},
		{
			name:     "among other media types",
			accept:   "application/json;q=0.5, text/event-stream; charset=utf-8",
			body:     `{"code":"1"}`,
			get:      found,
			execute:  emitAll(exe, nil),
			events:   append(streamed[:len(streamed):len(streamed)], sseEvent{"end", ""}),
			wantExec: true,
		},
		{
			name:    "kernel lost mid-stream",
			accept:  "text/event-stream",
			body:    `{"code":"1"}`,
			get:     found,
			execute: emitAll(contexts.Execution{}, &contexts.Error{Code: contexts.CodeKernelUnavailable, Message: "the kernel cannot be reached", Err: errors.New("secret cause")}),
			events: append(streamed[:len(streamed):len(streamed)],
				sseEvent{"failure", `{"error":"the kernel cannot be reached","code":"KERNEL_UNAVAILABLE"}`}),
			wantExec: true,
		},
		{
			name:     "plain error mid-stream is hidden",
			accept:   "text/event-stream",
			body:     `{"code":"1"}`,
			get:      found,
			execute:  emitAll(contexts.Execution{}, errors.New("boom secret detail")),
			events:   append(streamed[:len(streamed):len(streamed)], sseEvent{"failure", `{"error":"internal error","code":"INTERNAL"}`}),
			wantExec: true,
		},
		{
			name:   "unknown context answers 404 before streaming",
			accept: "text/event-stream",
			id:     "ctx-00000000-0000-4000-8000-00000000dead",
			body:   `{"code":"1"}`,
			get:    notFound,
			want:   want{status: http.StatusNotFound, contentType: ctJSON, errObj: errBody("Context not found", contexts.CodeNotFound)},
		},
		{
			name:   "invalid request answers 400 before streaming",
			accept: "text/event-stream",
			body:   `{"timeout":1}`,
			want:   want{status: http.StatusBadRequest, contentType: ctJSON, errCode: contexts.CodeInvalid, errMsg: `"code"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := tt.id
			if id == "" {
				id = ctxID
			}
			s := newTestServer(t, &fakeService{get: tt.get, execute: tt.execute})
			got := s.do(t, request{
				method: http.MethodPost, path: "/api/v1/contexts/" + id + "/execute", body: tt.body,
				header: http.Header{"Accept": {tt.accept}},
			})
			if tt.want.status != 0 {
				checkResponse(t, got, tt.want)
			} else {
				if got.status != http.StatusOK {
					t.Fatalf("status = %d, want 200; body %s", got.status, got.body)
				}
				if ct := got.header.Get("Content-Type"); ct != "text/event-stream" {
					t.Errorf("Content-Type = %q, want text/event-stream", ct)
				}
				if cc := got.header.Get("Cache-Control"); cc != "no-cache" {
					t.Errorf("Cache-Control = %q, want no-cache", cc)
				}
				events := parseSSE(t, got.body)
				if len(events) != len(tt.events) {
					t.Fatalf("got %d events, want %d:\n%s", len(events), len(tt.events), got.body)
				}
				for i, ev := range events {
					w := tt.events[i]
					if ev.Event != w.Event {
						t.Errorf("event %d is %q, want %q", i, ev.Event, w.Event)
					}
					if w.Data != "" {
						checkJSONEqual(t, []byte(ev.Data), w.Data)
					}
				}
				if strings.Contains(string(got.body), "secret") {
					t.Errorf("stream shows a hidden cause:\n%s", got.body)
				}
			}

			var execs int
			for _, c := range s.fake.executes {
				execs++
				var want contexts.ExecuteRequest
				_ = json.Unmarshal([]byte(tt.body), &struct {
					Code *string            `json:"code"`
					Env  *map[string]string `json:"env"`
				}{&want.Code, &want.Env})
				if c.ID != id || c.Req.Code != want.Code || !reflect.DeepEqual(c.Req.Env, want.Env) {
					t.Errorf("Execute(%q, code %q, env %v), want (%q, %q, %v)", c.ID, c.Req.Code, c.Req.Env, id, want.Code, want.Env)
				}
			}
			if tt.wantExec != (execs == 1) || execs > 1 {
				t.Errorf("Execute called %d times, want %v", execs, tt.wantExec)
			}
		})
	}
}

// gatedRecorder is a ResponseRecorder whose Flush, once the body holds
// hold, signals blocked and waits for gate: the stream writer is then busy
// while the execution goes on.
type gatedRecorder struct {
	*httptest.ResponseRecorder
	hold    string
	blocked chan struct{}
	gate    chan struct{}
	once    sync.Once
}

func (g *gatedRecorder) Flush() {
	if strings.Contains(g.Body.String(), g.hold) {
		g.once.Do(func() {
			close(g.blocked)
			<-g.gate
		})
	}
	g.ResponseRecorder.Flush()
}

// TestExecuteStreamKeepsLastOutput checks that output arriving while earlier
// output is being written, just before the execution ends, is still sent
// before the end event. Which of the two the writer sees first varies, so the
// case is repeated.
func TestExecuteStreamKeepsLastOutput(t *testing.T) {
	var rec *gatedRecorder
	s := newTestServer(t, &fakeService{
		get: func(string) (contexts.Info, error) { return sampleInfo(), nil },
		execute: func(_ context.Context, _ string, req contexts.ExecuteRequest) (contexts.Execution, error) {
			req.OnEvent(kernel.Event{Type: "stdout", Text: "first\n"})
			select {
			case <-rec.blocked: // the writer is busy with "first"
			case <-time.After(5 * time.Second):
				return contexts.Execution{}, errors.New("the stream never flushed the first output")
			}
			req.OnEvent(kernel.Event{Type: "stdout", Text: "last\n"})
			// Let the writer go on once this execution has had time to end.
			go func() {
				time.Sleep(2 * time.Millisecond)
				close(rec.gate)
			}()
			return contexts.Execution{Result: kernel.Result{Stdout: "first\nlast\n", Status: "ok", ExecutionCount: intPtr(1)}}, nil
		},
	})
	want := []sseEvent{
		{"stdout", `{"text":"first\n"}`},
		{"stdout", `{"text":"last\n"}`},
		{"end", `{"output":{"stdout":"first\nlast\n","stderr":""},"success":true,"execution_time":0,"execution_count":1,"results":[]}`},
	}
	const body = `{"code":"print('first'); print('last')"}`
	for run := range 30 {
		rec = &gatedRecorder{ResponseRecorder: httptest.NewRecorder(), hold: "first", blocked: make(chan struct{}), gate: make(chan struct{})}
		req := httptest.NewRequest(http.MethodPost, "/api/v1/contexts/"+ctxID+"/execute", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "text/event-stream")
		s.h.ServeHTTP(rec, req)
		resp := rec.Result()
		respBody, _ := io.ReadAll(resp.Body)
		s.v.Check(t, req, []byte(body), resp, respBody)

		events := parseSSE(t, respBody)
		if len(events) != len(want) {
			t.Fatalf("run %d: got %d events, want %d:\n%s", run, len(events), len(want), respBody)
		}
		for i, ev := range events {
			if ev.Event != want[i].Event {
				t.Fatalf("run %d: event %d is %q, want %q:\n%s", run, i, ev.Event, want[i].Event, respBody)
			}
			checkJSONEqual(t, []byte(ev.Data), want[i].Data)
		}
	}
}

// A client that falls more than maxQueued behind is cut off: the stream
// ends without its end event, and the execution is interrupted (its ctx
// ends) rather than its output piling up in the daemon.
func TestExecuteStreamCutsOffSlowClient(t *testing.T) {
	var rec *gatedRecorder
	interrupted := make(chan bool, 1)
	s := newTestServer(t, &fakeService{
		get: func(string) (contexts.Info, error) { return sampleInfo(), nil },
		execute: func(ctx context.Context, _ string, req contexts.ExecuteRequest) (contexts.Execution, error) {
			req.OnEvent(kernel.Event{Type: "stdout", Text: "first\n"})
			<-rec.blocked // the client stops reading
			chunk := strings.Repeat("x", 1<<20)
			for range maxQueued>>20 + 2 {
				req.OnEvent(kernel.Event{Type: "stdout", Text: chunk})
			}
			select {
			case <-ctx.Done():
				interrupted <- true
			case <-time.After(5 * time.Second):
				interrupted <- false
			}
			close(rec.gate)
			return contexts.Execution{Result: kernel.Result{Status: "ok"}}, nil
		},
	})
	rec = &gatedRecorder{ResponseRecorder: httptest.NewRecorder(), hold: "first", blocked: make(chan struct{}), gate: make(chan struct{})}
	req := httptest.NewRequest(http.MethodPost, "/api/v1/contexts/"+ctxID+"/execute", strings.NewReader(`{"code":"1"}`))
	req.Header.Set("Accept", "text/event-stream")
	s.h.ServeHTTP(rec, req)
	if !<-interrupted {
		t.Error("the execution was not interrupted when its client fell behind")
	}
	body := rec.Body.String()
	if strings.Contains(body, "event: end") || len(body) > 1<<20 {
		t.Errorf("a client cut off got %d bytes, ending %q", len(body), body[max(0, len(body)-80):])
	}
}

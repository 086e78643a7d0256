package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

const (
	ctxID       = "ctx-3f2b8c1e-9a4d-4e7b-8c21-5d6f7a8b9c0d"
	contextJSON = `{"context_id":"` + ctxID + `","type":"jupyter","language":"python","session_name":"s","working_dir":"/workspace","status":"active","created_at":"2025-01-15T10:30:00Z","last_activity":"2025-01-15T10:31:12Z","execution_count":3,"restarts":1}`
	notFound    = `{"error":"Context not found","code":"CONTEXT_NOT_FOUND"}`
)

// fakeServer answers like sandboxd: routes maps "METHOD /path" to a handler,
// and anything else gets sandboxd's NOT_FOUND body.
func fakeServer(tb testing.TB, routes map[string]http.HandlerFunc) *Client {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := routes[r.Method+" "+r.URL.Path]; ok {
			h(w, r)
			return
		}
		writeJSON(w, http.StatusNotFound, `{"error":"no such endpoint","code":"NOT_FOUND"}`)
	}))
	tb.Cleanup(srv.Close)
	return New(srv.URL + "/")
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body+"\n")
}

func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { writeJSON(w, status, body) }
}

// requestBody decodes the JSON body of r, failing the test when it is not.
func requestBody(tb testing.TB, r *http.Request) map[string]any {
	tb.Helper()
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		tb.Errorf("Content-Type = %q, want application/json", ct)
	}
	var m map[string]any
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		tb.Errorf("decode request body: %v", err)
	}
	return m
}

func wantContext() Context {
	return Context{
		ID: ctxID, Type: "jupyter", Language: "python", SessionName: "s", WorkingDir: "/workspace",
		Status: "active", ExecutionCount: 3, Restarts: 1,
		CreatedAt:    time.Date(2025, 1, 15, 10, 30, 0, 0, time.UTC),
		LastActivity: time.Date(2025, 1, 15, 10, 31, 12, 0, time.UTC),
	}
}

func TestCreateContext(t *testing.T) {
	for _, pool := range []string{PoolHit, PoolMiss, ""} {
		t.Run("pool="+pool, func(t *testing.T) {
			c := fakeServer(t, map[string]http.HandlerFunc{
				"POST /api/v1/contexts": func(w http.ResponseWriter, r *http.Request) {
					got := requestBody(t, r)
					want := map[string]any{"language": "python", "session_name": "s", "env": map[string]any{"A": "1"}}
					if !reflect.DeepEqual(got, want) {
						t.Errorf("request body = %v, want %v", got, want)
					}
					if pool != "" {
						w.Header().Set(PoolHeader, pool)
					}
					writeJSON(w, http.StatusCreated, contextJSON)
				},
			})
			got, err := c.CreateContext(t.Context(), CreateRequest{Language: "python", SessionName: "s", Env: map[string]string{"A": "1"}})
			if err != nil {
				t.Fatal(err)
			}
			want := wantContext()
			want.Pool = pool
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("context = %+v\nwant      %+v", *got, want)
			}
		})
	}
}

func TestContextCalls(t *testing.T) {
	path := "/api/v1/contexts/" + ctxID
	c := fakeServer(t, map[string]http.HandlerFunc{
		"GET /health":                 func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "OK") },
		"GET /readyz":                 func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "OK") },
		"GET " + path:                 answer(http.StatusOK, contextJSON),
		"GET /api/v1/contexts":        answer(http.StatusOK, `{"contexts":[`+contextJSON+`]}`),
		"DELETE " + path:              func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) },
		"POST " + path + "/interrupt": func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) },
		"POST " + path + "/restart":   answer(http.StatusOK, contextJSON),
	})
	ctx := t.Context()
	want := wantContext()

	if err := c.Health(ctx); err != nil {
		t.Errorf("Health: %v", err)
	}
	if err := c.Ready(ctx); err != nil {
		t.Errorf("Ready: %v", err)
	}
	if got, err := c.GetContext(ctx, ctxID); err != nil || !reflect.DeepEqual(*got, want) {
		t.Errorf("GetContext = %+v, %v", got, err)
	}
	if got, err := c.ListContexts(ctx); err != nil || !reflect.DeepEqual(got, []Context{want}) {
		t.Errorf("ListContexts = %+v, %v", got, err)
	}
	if got, err := c.Restart(ctx, ctxID); err != nil || !reflect.DeepEqual(*got, want) {
		t.Errorf("Restart = %+v, %v", got, err)
	}
	if err := c.Interrupt(ctx, ctxID); err != nil {
		t.Errorf("Interrupt: %v", err)
	}
	if err := c.DeleteContext(ctx, ctxID); err != nil {
		t.Errorf("DeleteContext: %v", err)
	}
}

func TestLanguagesAndPool(t *testing.T) {
	c := fakeServer(t, map[string]http.HandlerFunc{
		"GET /api/v1/languages": answer(http.StatusOK, `{"languages":[{"name":"python","image":"sandboxd/python-kernel:latest","installed":true},{"name":"r","image":"sandboxd/r-kernel:latest","installed":false}]}`),
		"GET /api/v1/pool":      answer(http.StatusOK, `{"pools":[{"language":"python","size":2,"ready":1}]}`),
		"GET /metrics": func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "process_resident_memory_bytes 1.2e+07\n")
		},
	})
	langs, err := c.Languages(t.Context())
	wantLangs := []Language{{"python", "sandboxd/python-kernel:latest", true}, {"r", "sandboxd/r-kernel:latest", false}}
	if err != nil || !reflect.DeepEqual(langs, wantLangs) {
		t.Errorf("Languages = %+v, %v; want %+v", langs, err, wantLangs)
	}
	pools, err := c.Pool(t.Context())
	if want := []PoolStatus{{"python", 2, 1}}; err != nil || !reflect.DeepEqual(pools, want) {
		t.Errorf("Pool = %+v, %v; want %+v", pools, err, want)
	}
	m, err := c.Metrics(t.Context())
	if err != nil || !strings.Contains(m, "process_resident_memory_bytes") {
		t.Errorf("Metrics = %q, %v", m, err)
	}
}

func TestErrors(t *testing.T) {
	c := fakeServer(t, map[string]http.HandlerFunc{
		"GET /api/v1/contexts/ctx-gone": answer(http.StatusNotFound, notFound),
		"GET /readyz":                   answer(http.StatusServiceUnavailable, `{"error":"the Docker engine cannot be reached","code":"DOCKER_UNAVAILABLE"}`),
		"GET /api/v1/contexts": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "<html>bad gateway</html>\n")
		},
	})
	ctx := t.Context()
	tests := []struct {
		name string
		call func() error
		want Error
	}{
		{"context not found", func() error { _, err := c.GetContext(ctx, "ctx-gone"); return err },
			Error{Status: 404, Code: CodeContextNotFound, Message: "Context not found"}},
		{"not ready", func() error { return c.Ready(ctx) },
			Error{Status: 503, Code: CodeDockerUnavailable, Message: "the Docker engine cannot be reached"}},
		{"no pool route", func() error { _, err := c.Pool(ctx); return err },
			Error{Status: 404, Code: CodeNotFound, Message: "no such endpoint"}},
		{"not our body", func() error { _, err := c.ListContexts(ctx); return err },
			Error{Status: 502, Message: "<html>bad gateway</html>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			if *e != tt.want {
				t.Errorf("error = %+v, want %+v", *e, tt.want)
			}
			if tt.want.Code == "" {
				return
			}
			if !IsCode(err, tt.want.Code) || IsCode(err, CodeInternal) {
				t.Errorf("IsCode(%v) is wrong", err)
			}
			if !errors.Is(err, &Error{Code: tt.want.Code}) || errors.Is(err, &Error{Code: CodeInternal}) {
				t.Errorf("errors.Is(%v) is wrong", err)
			}
		})
	}
}

const executeJSON = `{"output":{"stdout":"hi\n","stderr":"oops\n"},"success":false,"execution_time":0.25,"execution_count":4,` +
	`"results":[{"type":"execute_result","data":{"text/plain":"2","application/json":{"a":1}},"metadata":{}}],` +
	`"error":{"name":"ZeroDivisionError","value":"division by zero","traceback":"tb"},"truncated":true}`

func wantExecute() *ExecuteResponse {
	four := 4
	return &ExecuteResponse{
		Output:         Output{Stdout: "hi\n", Stderr: "oops\n"},
		ExecutionTime:  0.25,
		ExecutionCount: &four,
		Results: []Result{{
			Type:     "execute_result",
			Data:     map[string]json.RawMessage{"text/plain": json.RawMessage(`"2"`), "application/json": json.RawMessage(`{"a":1}`)},
			Metadata: json.RawMessage(`{}`),
		}},
		Error:     &ExecutionError{Name: "ZeroDivisionError", Value: "division by zero", Traceback: "tb"},
		Truncated: true,
	}
}

func TestExecute(t *testing.T) {
	c := fakeServer(t, map[string]http.HandlerFunc{
		"POST /api/v1/contexts/" + ctxID + "/execute": func(w http.ResponseWriter, r *http.Request) {
			got := requestBody(t, r)
			want := map[string]any{"code": "1/0", "timeout": 1.5, "env": map[string]any{"X": "y"}}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("request body = %v, want %v", got, want)
			}
			writeJSON(w, http.StatusOK, executeJSON)
		},
	})
	got, err := c.Execute(t.Context(), ctxID, ExecuteRequest{Code: "1/0", Timeout: 1500 * time.Millisecond, Env: map[string]string{"X": "y"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := wantExecute(); !reflect.DeepEqual(got, want) {
		t.Errorf("response = %+v\nwant       %+v", got, want)
	}
	if s, ok := got.Results[0].Text("text/plain"); !ok || s != "2" {
		t.Errorf(`Text("text/plain") = %q, %v`, s, ok)
	}
	if _, ok := got.Results[0].Text("application/json"); ok {
		t.Error(`Text("application/json") of an object reported a string`)
	}
}

func TestExecuteRequestOmitsDefaults(t *testing.T) {
	b, err := json.Marshal(ExecuteRequest{Code: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"code":"x"}` {
		t.Errorf("body = %s", b)
	}
}

// streamServer answers an execute with text/event-stream: it writes each
// chunk and flushes it, waiting for next (when not nil) after the first.
func streamServer(tb testing.TB, next <-chan struct{}, chunks ...string) *Client {
	return fakeServer(tb, map[string]http.HandlerFunc{
		"POST /api/v1/contexts/" + ctxID + "/execute": func(w http.ResponseWriter, r *http.Request) {
			if a := r.Header.Get("Accept"); a != "text/event-stream" {
				tb.Errorf("Accept = %q", a)
			}
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-cache")
			w.WriteHeader(http.StatusOK)
			for i, chunk := range chunks {
				if i == 1 && next != nil {
					select {
					case <-next:
					case <-r.Context().Done():
						return
					}
				}
				io.WriteString(w, chunk)
				w.(http.Flusher).Flush()
			}
		},
	})
}

func sse(event, data string) string { return fmt.Sprintf("event: %s\ndata: %s\n\n", event, data) }

func TestExecuteStream(t *testing.T) {
	// The server holds back everything after the first event until the
	// client has seen it: events must arrive as they are sent.
	seenFirst := make(chan struct{})
	c := streamServer(t, seenFirst,
		sse("stdout", `{"text":"hi\n"}`),
		": keep-alive\n\n",
		sse("stderr", `{"text":"oops\n"}`),
		sse("result", `{"type":"execute_result","data":{"text/plain":"2","application/json":{"a":1}},"metadata":{}}`),
		"event: future\ndata: {}\n\n",
		sse("error", `{"name":"ZeroDivisionError","value":"division by zero","traceback":"tb"}`),
		sse("end", executeJSON),
	)
	var got []Event
	resp, err := c.ExecuteStream(t.Context(), ctxID, ExecuteRequest{Code: "1/0"}, func(ev Event) {
		if len(got) == 0 {
			close(seenFirst)
		}
		got = append(got, ev)
	})
	if err != nil {
		t.Fatal(err)
	}
	want := wantExecute()
	if !reflect.DeepEqual(resp, want) {
		t.Errorf("response = %+v\nwant       %+v", resp, want)
	}
	wantEvents := []Event{
		{Type: EventStdout, Text: "hi\n"},
		{Type: EventStderr, Text: "oops\n"},
		{Type: EventResult, Result: &want.Results[0]},
		{Type: EventError, Error: want.Error},
		{Type: EventEnd, End: want},
	}
	if !reflect.DeepEqual(got, wantEvents) {
		t.Errorf("events = %+v\nwant     %+v", got, wantEvents)
	}
}

func TestExecuteStreamFailure(t *testing.T) {
	c := streamServer(t, nil,
		sse("stdout", `{"text":"partial"}`),
		sse("failure", `{"error":"the kernel cannot be reached","code":"KERNEL_UNAVAILABLE"}`),
	)
	var types []string
	_, err := c.ExecuteStream(t.Context(), ctxID, ExecuteRequest{Code: "x"}, func(ev Event) { types = append(types, ev.Type) })
	var e *Error
	if !errors.As(err, &e) || *e != (Error{Code: CodeKernelUnavailable, Message: "the kernel cannot be reached"}) {
		t.Errorf("error = %v, want a KERNEL_UNAVAILABLE *Error with status 0", err)
	}
	if want := []string{EventStdout, EventFailure}; !reflect.DeepEqual(types, want) {
		t.Errorf("events = %v, want %v", types, want)
	}
}

func TestExecuteStreamCutShort(t *testing.T) {
	c := streamServer(t, nil, sse("stdout", `{"text":"partial"}`))
	_, err := c.ExecuteStream(t.Context(), ctxID, ExecuteRequest{Code: "x"}, nil)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("error = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestExecuteStreamErrorBeforeStream(t *testing.T) {
	c := fakeServer(t, map[string]http.HandlerFunc{
		"POST /api/v1/contexts/ctx-gone/execute": answer(http.StatusNotFound, notFound),
	})
	_, err := c.ExecuteStream(t.Context(), "ctx-gone", ExecuteRequest{Code: "x"}, nil)
	if !IsCode(err, CodeContextNotFound) {
		t.Errorf("error = %v, want CONTEXT_NOT_FOUND", err)
	}
}

func TestExecuteStreamNotStreamed(t *testing.T) {
	c := fakeServer(t, map[string]http.HandlerFunc{
		"POST /api/v1/contexts/" + ctxID + "/execute": answer(http.StatusOK, executeJSON),
	})
	var got []Event
	resp, err := c.ExecuteStream(t.Context(), ctxID, ExecuteRequest{Code: "x"}, func(ev Event) { got = append(got, ev) })
	if err != nil {
		t.Fatal(err)
	}
	if want := []Event{{Type: EventEnd, End: resp}}; !reflect.DeepEqual(got, want) || !reflect.DeepEqual(resp, wantExecute()) {
		t.Errorf("events = %+v, response = %+v", got, resp)
	}
}

func TestCancel(t *testing.T) {
	release := make(chan struct{})
	c := fakeServer(t, map[string]http.HandlerFunc{
		"POST /api/v1/contexts/" + ctxID + "/execute": func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		},
	})
	t.Cleanup(func() { close(release) }) // runs before the server closes
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Execute(ctx, ctxID, ExecuteRequest{Code: "import time; time.sleep(60)"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want context.DeadlineExceeded", err)
	}
}

func TestWithHTTPClient(t *testing.T) {
	used := false
	h := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		used = true
		return http.DefaultTransport.RoundTrip(r)
	})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "OK") }))
	defer srv.Close()
	if err := New(srv.URL, WithHTTPClient(h)).Health(t.Context()); err != nil || !used {
		t.Errorf("Health = %v, custom client used: %v", err, used)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestAPIKey(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer k1" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"valid credentials are required","code":"UNAUTHORIZED"}`)
			return
		}
		io.WriteString(w, "OK")
	}))
	defer srv.Close()
	if err := New(srv.URL, WithAPIKey("k1")).Ready(context.Background()); err != nil {
		t.Errorf("with the key: %v", err)
	}
	if err := New(srv.URL).Ready(context.Background()); !IsCode(err, CodeUnauthorized) {
		t.Errorf("without the key: %v", err)
	}
}

package httpapi

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/kernel"
)

// Messages of the requests every route refuses alike.
const (
	msgTimeoutNotPositive = `field "timeout" must be more than 0 seconds`
	msgTimeoutTooLarge    = "timeout must be more than 0 and at most 3600 seconds" // fakeService's bound
	msgEnvName            = `env name "1A" must be letters, digits and underscores, not starting with a digit`
	msgEnvNUL             = `env value of "A" contains a NUL byte`
)

// TestBadRequestsReachNoService checks that each route refuses a bad
// timeout, env or command with 400 and the same message, before it calls
// the service at all: in particular AgentRun's execute, which may create a
// context for the request, creates none.
func TestBadRequestsReachNoService(t *testing.T) {
	sse := http.Header{"Accept": {"text/event-stream"}}
	execute := "/api/v1/contexts/" + ctxID + "/execute"
	commands := "/api/v1/contexts/" + ctxID + "/commands"
	tests := []struct {
		name   string
		path   string
		header http.Header
		body   string
		msg    string
	}{
		{"execute, zero timeout", execute, nil, `{"code":"1","timeout":0}`, msgTimeoutNotPositive},
		{"execute, negative timeout", execute, nil, `{"code":"1","timeout":-1}`, msgTimeoutNotPositive},
		{"execute, timeout too large", execute, nil, `{"code":"1","timeout":3601}`, msgTimeoutTooLarge},
		{"execute, bad env name", execute, nil, `{"code":"1","env":{"1A":"x"}}`, msgEnvName},
		{"execute, NUL in env", execute, nil, `{"code":"1","env":{"A":"\u0000"}}`, msgEnvNUL},
		{"streamed execute, timeout too large", execute, sse, `{"code":"1","timeout":3601}`, msgTimeoutTooLarge},
		{"streamed execute, bad env name", execute, sse, `{"code":"1","env":{"1A":"x"}}`, msgEnvName},
		{"command, zero timeout", commands, nil, `{"command":"ls","timeout":0}`, msgTimeoutNotPositive},
		{"command, timeout too large", commands, nil, `{"command":"ls","timeout":3601}`, msgTimeoutTooLarge},
		{"command, bad env name", commands, nil, `{"command":"ls","env":{"1A":"x"}}`, msgEnvName},
		{"command, blank", commands, nil, `{"command":" \n"}`, `field "command" must not be empty`},
		{"streamed command, timeout too large", commands, sse, `{"command":"ls","timeout":3601}`, msgTimeoutTooLarge},
		{"streamed command, NUL in env", commands, sse, `{"command":"ls","env":{"A":"\u0000"}}`, msgEnvNUL},
		{"create, bad env name", "/api/v1/contexts", nil, `{"env":{"1A":"x"}}`, msgEnvName},
		{"create, NUL in env", "/api/v1/contexts", nil, `{"env":{"A":"\u0000"}}`, msgEnvNUL},
		{"AgentRun execute, zero timeout", "/sandboxes/sb1/contexts/execute", nil, `{"code":"1","timeout":0}`, msgTimeoutNotPositive},
		{"AgentRun execute, timeout too large", "/sandboxes/sb1/contexts/execute", nil, `{"code":"1","language":"python","timeout":1e6}`, msgTimeoutTooLarge},
		{"AgentRun create, bad cwd", "/sandboxes/sb1/contexts", nil, `{"cwd":"/etc"}`, `working_dir "/etc" must be /workspace, /tmp or a directory below them`},
		{"AgentRun command, zero timeout", "/sandboxes/sb1/processes/cmd", nil, `{"command":"ls","timeout":0}`, msgTimeoutNotPositive},
		{"AgentRun command, timeout too large", "/sandboxes/sb1/processes/cmd", nil, `{"command":"ls","timeout":3601}`, msgTimeoutTooLarge},
		{"AgentRun command, empty", "/sandboxes/sb1/processes/cmd", nil, `{"command":""}`, `field "command" must not be empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Every method of the fake fails the request if called.
			s := newTestServer(t, &fakeService{})
			got := s.do(t, request{method: http.MethodPost, path: tt.path, body: tt.body, header: tt.header})
			checkResponse(t, got, want{status: http.StatusBadRequest, contentType: ctJSON, errObj: errBody(tt.msg, contexts.CodeInvalid)})
			if n := s.fake.calls(); n != 0 {
				t.Errorf("the service got %d calls; creates %v, gets %v", n, s.fake.creates, s.fake.gets)
			}
			if calls := s.fake.calledWith(); len(calls) != 0 {
				t.Errorf("the file service got calls %v", calls)
			}
		})
	}
}

// TestRelayRefusesBadRequests checks that the websocket relay answers a bad
// execute_request with an error reply, as it did when the service refused
// it, without running it; and that a timeout not more than 0 takes the
// default, as the relay has no field to name in a refusal.
func TestRelayRefusesBadRequests(t *testing.T) {
	fake := &fakeService{
		get: func(string) (contexts.Info, error) { return sampleInfo(), nil },
		execute: func(context.Context, string, contexts.ExecuteRequest) (contexts.Execution, error) {
			return contexts.Execution{Result: kernel.Result{Status: "ok"}}, nil
		},
	}
	conn := dialRelay(t, newTestServer(t, fake), ctxID)
	for _, tt := range []struct {
		name     string
		metadata map[string]any
		msg      string
	}{
		{"timeout too large", map[string]any{"timeout": 3601}, msgTimeoutTooLarge},
		{"bad env name", map[string]any{"env": map[string]string{"1A": "x"}}, msgEnvName},
		{"NUL in env", map[string]any{"env": map[string]string{"A": "\x00"}}, msgEnvNUL},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sendRelay(t, conn, tt.name, "execute_request", map[string]any{"code": "1"}, tt.metadata)
			types, msgs := readRelay(t, conn, tt.name, "status:idle")
			if len(types) != 3 || types[1] != "execute_reply" {
				t.Fatalf("answered %q", types)
			}
			var reply struct{ Status, Ename, Evalue string }
			json.Unmarshal(msgs[1].Content, &reply)
			if reply.Status != "error" || reply.Ename != contexts.CodeInvalid || reply.Evalue != contexts.CodeInvalid+": "+tt.msg {
				t.Errorf("execute_reply %s", msgs[1].Content)
			}
		})
	}
	fake.mu.Lock()
	if len(fake.executes) != 0 {
		t.Errorf("Execute calls %+v", fake.executes)
	}
	fake.mu.Unlock()

	sendRelay(t, conn, "zero", "execute_request", map[string]any{"code": "1"}, map[string]any{"timeout": 0})
	if _, msgs := readRelay(t, conn, "zero", "status:idle"); !strings.Contains(string(msgs[1].Content), `"status":"ok"`) {
		t.Errorf("execute_reply %s", msgs[1].Content)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.executes) != 1 || fake.executes[0].Req.Timeout != 0 {
		t.Errorf("Execute calls %+v, want one with the default timeout", fake.executes)
	}
}

// Seconds past what a Duration holds are the longest duration, for the
// caller to cap, not one wrapped to negative.
func TestDurationOverflow(t *testing.T) {
	for _, secs := range []float64{1e10, 1e19, math.MaxFloat64} {
		if d := duration(&secs); d != math.MaxInt64 {
			t.Errorf("%g seconds: %v", secs, d)
		}
	}
	secs := 1.5
	if d := duration(&secs); d != 1500*time.Millisecond {
		t.Errorf("1.5 seconds: %v", d)
	}
}

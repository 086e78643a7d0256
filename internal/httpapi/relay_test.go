package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/kernel"
)

// relayMessage is what the tests read of a message from the relay.
type relayMessage struct {
	Header       kernel.Header   `json:"header"`
	ParentHeader kernel.Header   `json:"parent_header"`
	Channel      string          `json:"channel"`
	Content      json.RawMessage `json:"content"`
}

func dialRelay(tb testing.TB, s *testServer, id string) *websocket.Conn {
	tb.Helper()
	srv := httptest.NewServer(s.h)
	tb.Cleanup(srv.Close)
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/api/v1/contexts/"+id+"/ws", nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

func sendRelay(tb testing.TB, conn *websocket.Conn, msgID, msgType string, content, metadata any) {
	tb.Helper()
	m := map[string]any{
		"header":        map[string]string{"msg_id": msgID, "msg_type": msgType, "session": "s1", "version": "5.3"},
		"parent_header": map[string]any{}, "metadata": metadata, "content": content, "channel": "shell",
	}
	if err := conn.WriteJSON(m); err != nil {
		tb.Fatal(err)
	}
}

// readRelay reads messages until one of msgType whose parent is msgID has
// come, and returns the types of those answering msgID, in order.
func readRelay(tb testing.TB, conn *websocket.Conn, msgID, last string) ([]string, []relayMessage) {
	tb.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var types []string
	var msgs []relayMessage
	for {
		var m relayMessage
		if err := conn.ReadJSON(&m); err != nil {
			tb.Fatalf("after %q: %v", types, err)
		}
		if m.ParentHeader.MsgID != msgID {
			continue
		}
		name := m.Header.MsgType
		if name == "status" {
			var c struct {
				ExecutionState string `json:"execution_state"`
			}
			json.Unmarshal(m.Content, &c)
			name += ":" + c.ExecutionState
		}
		types = append(types, name)
		msgs = append(msgs, m)
		if name == last {
			return types, msgs
		}
	}
}

func TestRelay(t *testing.T) {
	out := kernel.Output{Type: "execute_result", Data: map[string]json.RawMessage{"text/plain": json.RawMessage(`"2"`)}}
	fake := &fakeService{
		get: func(string) (contexts.Info, error) { return sampleInfo(), nil },
		execute: func(_ context.Context, _ string, req contexts.ExecuteRequest) (contexts.Execution, error) {
			if req.Code == "fail" {
				return contexts.Execution{}, contexts.Errorf(contexts.CodeInvalid, "timeout too large")
			}
			req.OnEvent(kernel.Event{Type: "stdout", Text: "hi\n"})
			req.OnEvent(kernel.Event{Type: "result", Output: &out})
			return contexts.Execution{Result: kernel.Result{Stdout: "hi\n", Outputs: []kernel.Output{out}, Status: "ok", ExecutionCount: intPtr(3)}}, nil
		},
		interrupt: func(context.Context, string) error { return nil },
	}
	conn := dialRelay(t, newTestServer(t, fake), "ctx-1")

	sendRelay(t, conn, "info-1", "kernel_info_request", map[string]any{}, map[string]any{})
	if types, _ := readRelay(t, conn, "info-1", "status:idle"); strings.Join(types, " ") != "status:busy kernel_info_reply status:idle" {
		t.Errorf("kernel_info: %q", types)
	}

	sendRelay(t, conn, "exec-1", "execute_request", map[string]any{"code": "print('hi'); 1+1"}, map[string]any{"timeout": 2.5})
	types, msgs := readRelay(t, conn, "exec-1", "status:idle")
	if got := strings.Join(types, " "); got != "status:busy stream execute_result execute_reply status:idle" {
		t.Fatalf("execute: %q", got)
	}
	if string(msgs[1].Content) != `{"name":"stdout","text":"hi\n"}` {
		t.Errorf("stream content %s", msgs[1].Content)
	}
	var reply struct {
		Status         string `json:"status"`
		ExecutionCount int    `json:"execution_count"`
	}
	json.Unmarshal(msgs[3].Content, &reply)
	if msgs[3].Channel != "shell" || reply.Status != "ok" || reply.ExecutionCount != 3 {
		t.Errorf("execute_reply %s on %s", msgs[3].Content, msgs[3].Channel)
	}
	if calls := fake.executes; len(calls) != 1 || calls[0].Req.Timeout != 2500*time.Millisecond || calls[0].ID != "ctx-1" {
		t.Errorf("Execute calls %+v", calls)
	}

	sendRelay(t, conn, "exec-2", "execute_request", map[string]any{"code": "fail"}, map[string]any{})
	_, msgs = readRelay(t, conn, "exec-2", "status:idle")
	if !strings.Contains(string(msgs[1].Content), `"ename":"INVALID_REQUEST"`) {
		t.Errorf("failed execute_reply %s", msgs[1].Content)
	}

	sendRelay(t, conn, "int-1", "interrupt_request", map[string]any{}, map[string]any{})
	if types, _ := readRelay(t, conn, "int-1", "status:idle"); strings.Join(types, " ") != "status:busy interrupt_reply status:idle" || len(fake.interrupts) != 1 {
		t.Errorf("interrupt: %q, %d calls", types, len(fake.interrupts))
	}

	sendRelay(t, conn, "c-1", "complete_request", map[string]any{"code": "pri", "cursor_pos": 3}, map[string]any{})
	if _, msgs := readRelay(t, conn, "c-1", "status:idle"); msgs[1].Header.MsgType != "complete_reply" || !strings.Contains(string(msgs[1].Content), `"status":"error"`) {
		t.Errorf("unsupported request answered %+v", msgs)
	}
}

func TestRelayUnknownContext(t *testing.T) {
	s := newTestServer(t, &fakeService{get: func(string) (contexts.Info, error) {
		return contexts.Info{}, contexts.Errorf(contexts.CodeNotFound, "Context not found")
	}})
	checkResponse(t, s.do(t, request{method: "GET", path: "/api/v1/contexts/ctx-x/ws"}), want{
		status: 404, contentType: ctJSON, errObj: errBody("Context not found", contexts.CodeNotFound),
	})
}

// Past maxRelayQueue waiting executions, an execute_request is refused at
// once with QueueFull, and the reader goes on serving interrupts.
func TestRelayQueueFull(t *testing.T) {
	release := make(chan struct{})
	fake := &fakeService{
		get: func(string) (contexts.Info, error) { return sampleInfo(), nil },
		execute: func(ctx context.Context, _ string, req contexts.ExecuteRequest) (contexts.Execution, error) {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return contexts.Execution{Result: kernel.Result{Status: "ok"}}, nil
		},
		interrupt: func(context.Context, string) error { return nil },
	}
	conn := dialRelay(t, newTestServer(t, fake), "ctx-1")
	defer close(release)
	// One runs, maxRelayQueue wait, and the rest are refused; the worker
	// may not have taken the first yet, so the last is refused for sure.
	n := 1 + maxRelayQueue + 3
	for i := range n {
		sendRelay(t, conn, fmt.Sprintf("exec-%d", i), "execute_request", map[string]any{"code": "1"}, map[string]any{})
	}
	_, msgs := readRelay(t, conn, fmt.Sprintf("exec-%d", n-1), "status:idle")
	if len(msgs) != 3 || msgs[1].Header.MsgType != "execute_reply" || !strings.Contains(string(msgs[1].Content), `"ename":"QueueFull"`) {
		t.Fatalf("the execute_request past the queue got %+v", msgs)
	}
	sendRelay(t, conn, "int-1", "interrupt_request", map[string]any{}, map[string]any{})
	if types, _ := readRelay(t, conn, "int-1", "status:idle"); strings.Join(types, " ") != "status:busy interrupt_reply status:idle" {
		t.Errorf("interrupt: %q", types)
	}
}

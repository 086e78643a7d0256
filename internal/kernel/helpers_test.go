package kernel

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// The request msg_ids the fixtures answer.
const (
	fxParentA = "3f2b6c1e-9a7d-4c55-8e0b-1d2f3a4b5c6d"
	fxParentB = "a9e8d7c6-b5a4-4321-9f0e-6d5c4b3a2f10"
)

// fixture is one incoming message before it is put on the wire: its type
// and its content, as the JSON a kernel sends.
type fixture struct {
	msgType string
	content string
}

// Messages resembling what ipykernel sends (protocol 5.3) for print(1),
// 1 + 1, 1/0 and a matplotlib plot.
var (
	fxBusy     = fixture{"status", `{"execution_state": "busy"}`}
	fxIdle     = fixture{"status", `{"execution_state": "idle"}`}
	fxStarting = fixture{"status", `{"execution_state": "starting"}`}
	fxInput    = fixture{"execute_input", `{"code": "print(1)", "execution_count": 1}`}
	fxStdout1  = fixture{"stream", `{"name": "stdout", "text": "1\n"}`}
	fxReplyOK1 = fixture{"execute_reply", `{"status": "ok", "execution_count": 1, "user_expressions": {}, "payload": []}`}
	fxAborted  = fixture{"execute_reply", `{"status": "aborted"}`}

	fxResult2 = fixture{"execute_result", `{"data": {"text/plain": "2"}, "metadata": {}, "execution_count": 1}`}

	fxPNG = fixture{"display_data", `{"data": {"image/png": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==\n", "text/plain": "<Figure size 640x480 with 1 Axes>"}, "metadata": {"image/png": {"width": 1, "height": 1}}, "transient": {}}`}

	fxZeroDivision = fixture{"error", `{
		"ename": "ZeroDivisionError",
		"evalue": "division by zero",
		"traceback": [
			"\u001b[0;31m---------------------------------------------------------------------------\u001b[0m",
			"\u001b[0;31mZeroDivisionError\u001b[0m                         Traceback (most recent call last)",
			"Cell \u001b[0;32mIn[2], line 1\u001b[0m\n\u001b[0;32m----> 1\u001b[0m \u001b[38;5;241;43m1\u001b[39;49m\u001b[38;5;241;43m/\u001b[39;49m\u001b[38;5;241;43m0\u001b[39;49m\n",
			"\u001b[0;31mZeroDivisionError\u001b[0m: division by zero"
		]
	}`}
	fxReplyError2 = fixture{"execute_reply", `{"status": "error", "execution_count": 2, "ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": []}`}
)

// fxZeroDivisionTraceback is fxZeroDivision's traceback as plain text.
const fxZeroDivisionTraceback = "---------------------------------------------------------------------------\n" +
	"ZeroDivisionError                         Traceback (most recent call last)\n" +
	"Cell In[2], line 1\n" +
	"----> 1 1/0\n" +
	"\n" +
	"ZeroDivisionError: division by zero"

func fxStream(name, text string) fixture {
	b, err := json.Marshal(streamContent{Name: name, Text: text})
	if err != nil {
		panic(err)
	}
	return fixture{"stream", string(b)}
}

// wireMessage renders f as jupyter_server's websocket carries it in JSON
// form: full header and parent header, the copies of msg_id and msg_type it
// adds at the top level, metadata, buffers and the channel. An empty parent
// gives the empty parent header of a message that answers no request. The
// content is embedded byte for byte.
func wireMessage(parent string, f fixture) []byte {
	channel := "iopub"
	if strings.HasSuffix(f.msgType, "_reply") {
		channel = "shell"
	}
	parentHeader := "{}"
	if parent != "" {
		parentHeader = fmt.Sprintf(`{"msg_id": %q, "msg_type": "execute_request", "username": "sandboxd", "session": "5d0a4f8e-2c3b-4a1d-9e7f-0b1c2d3e4f50", "date": "2024-05-14T09:26:53.401022Z", "version": "5.3"}`, parent)
	}
	msgID := strings.ReplaceAll(uuid.NewString(), "-", "")[:24] + "_27_5"
	return fmt.Appendf(nil, `{"header": {"msg_id": %[1]q, "msg_type": %[2]q, "username": "jovyan", "session": "b1c2d3e4-f5a6b7c8d9e0f1a2b3c4d5e6", "date": "2024-05-14T09:26:53.419187Z", "version": "5.3"}, "msg_id": %[1]q, "msg_type": %[2]q, "parent_header": %[3]s, "metadata": {}, "content": %[4]s, "buffers": [], "channel": %[5]q}`,
		msgID, f.msgType, parentHeader, f.content, channel)
}

// decodeMessage decodes one websocket text frame the way Kernel.read does.
func decodeMessage(tb testing.TB, data []byte) *Message {
	tb.Helper()
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		tb.Fatalf("decode %s: %v", data, err)
	}
	return &m
}

// messages turns fixtures into decoded messages answering parent.
func messages(tb testing.TB, parent string, fs ...fixture) []*Message {
	tb.Helper()
	ms := make([]*Message, len(fs))
	for i, f := range fs {
		ms[i] = decodeMessage(tb, wireMessage(parent, f))
	}
	return ms
}

// feed hands ex the fixtures as messages answering fxParentA.
func feed(tb testing.TB, ex *execution, fs ...fixture) {
	tb.Helper()
	for _, m := range messages(tb, fxParentA, fs...) {
		ex.handle(m)
	}
}

func isDone(ex *execution) bool {
	select {
	case <-ex.done:
		return true
	default:
		return false
	}
}

func intPtr(n int) *int { return &n }

func fmtCount(p *int) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

// checkResult compares every field of got with want.
func checkResult(tb testing.TB, got, want Result) {
	tb.Helper()
	if got.Stdout != want.Stdout {
		tb.Errorf("Stdout = %q, want %q", got.Stdout, want.Stdout)
	}
	if got.Stderr != want.Stderr {
		tb.Errorf("Stderr = %q, want %q", got.Stderr, want.Stderr)
	}
	if got.Truncated != want.Truncated {
		tb.Errorf("Truncated = %v, want %v", got.Truncated, want.Truncated)
	}
	if got.Restarted != want.Restarted {
		tb.Errorf("Restarted = %v, want %v", got.Restarted, want.Restarted)
	}
	if got.Status != want.Status {
		tb.Errorf("Status = %q, want %q", got.Status, want.Status)
	}
	if fmtCount(got.ExecutionCount) != fmtCount(want.ExecutionCount) {
		tb.Errorf("ExecutionCount = %s, want %s", fmtCount(got.ExecutionCount), fmtCount(want.ExecutionCount))
	}
	switch {
	case got.Error == nil && want.Error == nil:
	case got.Error == nil || want.Error == nil || *got.Error != *want.Error:
		tb.Errorf("Error = %+v, want %+v", got.Error, want.Error)
	}
	if len(got.Outputs) != len(want.Outputs) {
		tb.Errorf("got %d outputs, want %d: %+v", len(got.Outputs), len(want.Outputs), got.Outputs)
		return
	}
	for i, w := range want.Outputs {
		g := got.Outputs[i]
		if g.Type != w.Type {
			tb.Errorf("Outputs[%d].Type = %q, want %q", i, g.Type, w.Type)
		}
		if len(g.Data) != len(w.Data) {
			tb.Errorf("Outputs[%d].Data has %d entries, want %d", i, len(g.Data), len(w.Data))
		}
		for mime, wv := range w.Data {
			if gv, ok := g.Data[mime]; !ok || string(gv) != string(wv) {
				tb.Errorf("Outputs[%d].Data[%q] = %q, want %q", i, mime, gv, wv)
			}
		}
		if string(g.Metadata) != string(w.Metadata) {
			tb.Errorf("Outputs[%d].Metadata = %q, want %q", i, g.Metadata, w.Metadata)
		}
	}
}

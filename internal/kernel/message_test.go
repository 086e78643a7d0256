package kernel

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// checkGolden compares got with the golden file at path, or rewrites the
// file when -update is set.
func checkGolden(tb testing.TB, path string, got []byte) {
	tb.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("%v (run go test ./internal/kernel/ -run %s -update to create it)", err, tb.Name())
	}
	if !bytes.Equal(got, want) {
		tb.Errorf("%s differs (run with -update if the change is intended)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// normaliseRequest checks the fields of an encoded request that change on
// every call (msg_id, session, date) and replaces them with placeholders,
// returning the request as indented JSON in its wire order.
func normaliseRequest(tb testing.TB, data []byte, session string, notBefore, notAfter time.Time) []byte {
	tb.Helper()
	var msg struct{ Header Header }
	if err := json.Unmarshal(data, &msg); err != nil {
		tb.Fatalf("decode %s: %v", data, err)
	}
	h := msg.Header

	if u, err := uuid.Parse(h.MsgID); err != nil || u.Version() != 4 || h.MsgID != u.String() {
		tb.Errorf("msg_id %q is not a canonical version 4 uuid (err %v)", h.MsgID, err)
	}
	if h.Session != session {
		tb.Errorf("session = %q, want %q", h.Session, session)
	}
	if !strings.HasSuffix(h.Date, "Z") {
		tb.Errorf("date %q is not in UTC", h.Date)
	}
	if d, err := time.Parse(time.RFC3339Nano, h.Date); err != nil {
		tb.Errorf("date %q: %v", h.Date, err)
	} else if d.Before(notBefore.Truncate(time.Microsecond)) || d.After(notAfter) {
		tb.Errorf("date %v is not between %v and %v", d, notBefore, notAfter)
	}

	for _, r := range []struct{ field, value string }{
		{"msg_id", h.MsgID},
		{"session", h.Session},
		{"date", h.Date},
	} {
		old := fmt.Sprintf("%q:%q", r.field, r.value)
		if bytes.Count(data, []byte(old)) != 1 {
			tb.Fatalf("%s not found once in %s", old, data)
		}
		data = bytes.Replace(data, []byte(old), fmt.Appendf(nil, "%q:%q", r.field, "NORMALISED_"+strings.ToUpper(r.field)), 1)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, data, "", "  "); err != nil {
		tb.Fatal(err)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

func TestNewRequestGolden(t *testing.T) {
	tests := []struct {
		name    string
		msgType string
		content any
	}{
		{
			name:    "execute_request",
			msgType: "execute_request",
			content: executeRequest{
				Code:            "import sys\nprint(1, file=sys.stderr)\n1/0",
				StoreHistory:    true,
				UserExpressions: map[string]string{},
				StopOnError:     true,
			},
		},
		{
			name:    "kernel_info_request",
			msgType: "kernel_info_request",
			content: struct{}{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			session := uuid.NewString()
			before := time.Now()
			req := newRequest(session, tt.msgType, "shell", tt.content)
			data, err := json.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			after := time.Now()
			got := normaliseRequest(t, data, session, before, after)
			checkGolden(t, filepath.Join("testdata", tt.name+".golden"), got)
		})
	}
}

// TestNewRequestEncoding checks the parts of an encoded execute_request that
// Jupyter rejects or misroutes when wrong, independently of the golden file.
func TestNewRequestEncoding(t *testing.T) {
	const session = "5d0a4f8e-2c3b-4a1d-9e7f-0b1c2d3e4f50"
	req := newRequest(session, "execute_request", "shell", executeRequest{
		Code:            "print(1)",
		StoreHistory:    true,
		UserExpressions: map[string]string{},
		StopOnError:     true,
	})
	data, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}

	var parts map[string]json.RawMessage
	if err := json.Unmarshal(data, &parts); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"parent_header": `{}`,
		"metadata":      `{}`,
		"buffers":       `[]`,
		"channel":       `"shell"`,
		"content":       `{"code":"print(1)","silent":false,"store_history":true,"user_expressions":{},"allow_stdin":false,"stop_on_error":true}`,
	} {
		if got := string(parts[key]); got != want {
			t.Errorf("%s = %s, want %s", key, got, want)
		}
	}
	if len(parts) != 6 {
		t.Errorf("message has %d parts, want header, parent_header, metadata, content, channel, buffers: %s", len(parts), data)
	}

	var header Header
	if err := json.Unmarshal(parts["header"], &header); err != nil {
		t.Fatal(err)
	}
	if header.MsgID != req.Header.MsgID {
		t.Errorf("sent msg_id %q, but the request is registered as %q", header.MsgID, req.Header.MsgID)
	}
	if header.Version != "5.3" || header.MsgType != "execute_request" || header.Session != session || header.Username != "sandboxd" {
		t.Errorf("header = %+v, want version 5.3, msg_type execute_request, session %s, username sandboxd", header, session)
	}
}

func TestNewRequestFreshMsgID(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := newRequest("s", "execute_request", "shell", struct{}{}).Header.MsgID
		if _, err := uuid.Parse(id); err != nil {
			t.Fatalf("msg_id %q: %v", id, err)
		}
		if seen[id] {
			t.Fatalf("msg_id %q used twice", id)
		}
		seen[id] = true
	}
}

func TestDecodeMessage(t *testing.T) {
	tests := []struct {
		file        string
		header      Header
		parent      Header
		channel     string
		wantContent func(t *testing.T, content json.RawMessage)
	}{
		{
			file: "stream_message.json",
			header: Header{
				MsgID:    "b1c2d3e4-f5a6b7c8d9e0f1a2b3c4d5e6_27_5",
				Session:  "b1c2d3e4-f5a6b7c8d9e0f1a2b3c4d5e6",
				Username: "jovyan",
				Date:     "2024-05-14T09:26:53.419187Z",
				MsgType:  "stream",
				Version:  "5.3",
			},
			parent: Header{
				MsgID:    "3f2b6c1e-9a7d-4c55-8e0b-1d2f3a4b5c6d",
				Session:  "5d0a4f8e-2c3b-4a1d-9e7f-0b1c2d3e4f50",
				Username: "sandboxd",
				Date:     "2024-05-14T09:26:53.401022Z",
				MsgType:  "execute_request",
				Version:  "5.3",
			},
			channel: "iopub",
			wantContent: func(t *testing.T, content json.RawMessage) {
				var c streamContent
				if err := json.Unmarshal(content, &c); err != nil {
					t.Fatal(err)
				}
				if c != (streamContent{Name: "stdout", Text: "hello, wörld\n"}) {
					t.Errorf("content = %+v", c)
				}
			},
		},
		{
			file: "status_restarting.json",
			header: Header{
				MsgID:    "0c6f4a7e-8b1d-4e2f-a3c5-d7e9f1b3a5c7",
				Session:  "e4d3c2b1-a098-4f7e-8d6c-5b4a39281706",
				Username: "username",
				Date:     "2024-05-14T09:31:02.118004Z",
				MsgType:  "status",
				Version:  "5.3",
			},
			parent:  Header{},
			channel: "iopub",
			wantContent: func(t *testing.T, content json.RawMessage) {
				var c statusContent
				if err := json.Unmarshal(content, &c); err != nil {
					t.Fatal(err)
				}
				if c.ExecutionState != "restarting" {
					t.Errorf("execution_state = %q, want restarting", c.ExecutionState)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			m := decodeMessage(t, data)
			if m.Header != tt.header {
				t.Errorf("Header = %+v, want %+v", m.Header, tt.header)
			}
			if m.ParentHeader != tt.parent {
				t.Errorf("ParentHeader = %+v, want %+v", m.ParentHeader, tt.parent)
			}
			if m.Channel != tt.channel {
				t.Errorf("Channel = %q, want %q", m.Channel, tt.channel)
			}
			tt.wantContent(t, m.Content)
		})
	}
}

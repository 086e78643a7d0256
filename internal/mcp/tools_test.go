package mcp

import (
	"context"
	"encoding/json"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandboxd/sandboxd/client"
)

// fakeAPI records the calls the tools make and answers them with its
// fields; a nil field answers CONTEXT_NOT_FOUND.
type fakeAPI struct {
	calls []any // the requests, as the tools made them

	create   *client.Context
	list     []client.Context
	execute  *client.ExecuteResponse
	upload   *client.FileInfo
	download []byte
	command  *client.CommandResponse
}

var _ API = (*fakeAPI)(nil)

var errNotFound = &client.Error{Status: 404, Code: client.CodeContextNotFound, Message: "Context not found"}

func answer[T any](f *fakeAPI, v T, call any) (T, error) {
	f.calls = append(f.calls, call)
	var zero T
	if reflect.ValueOf(&v).Elem().IsZero() {
		return zero, errNotFound
	}
	return v, nil
}

func (f *fakeAPI) CreateContext(_ context.Context, req client.CreateRequest) (*client.Context, error) {
	return answer(f, f.create, req)
}

func (f *fakeAPI) GetContext(_ context.Context, id string) (*client.Context, error) {
	return answer(f, f.create, "get "+id)
}

func (f *fakeAPI) ListContexts(context.Context) ([]client.Context, error) {
	f.calls = append(f.calls, "list")
	return f.list, nil
}

func (f *fakeAPI) DeleteContext(_ context.Context, id string) error {
	f.calls = append(f.calls, "delete "+id)
	if id != "ctx-1" {
		return errNotFound
	}
	return nil
}

func (f *fakeAPI) Execute(_ context.Context, id string, req client.ExecuteRequest) (*client.ExecuteResponse, error) {
	return answer(f, f.execute, []any{id, req})
}

func (f *fakeAPI) UploadFile(_ context.Context, id, path string, body io.Reader) (*client.FileInfo, error) {
	b, _ := io.ReadAll(body)
	return answer(f, f.upload, []any{id, path, string(b)})
}

func (f *fakeAPI) DownloadFile(_ context.Context, id, path string) (io.ReadCloser, error) {
	b, err := answer(f, f.download, []any{id, path})
	if err != nil {
		return nil, err
	}
	return io.NopCloser(strings.NewReader(string(b))), nil
}

func (f *fakeAPI) RunCommand(_ context.Context, id string, req client.CommandRequest) (*client.CommandResponse, error) {
	return answer(f, f.command, []any{id, req})
}

// connect serves NewServer(api) to an SDK client over an in-memory pipe.
func connect(tb testing.TB, api API) *sdk.ClientSession {
	tb.Helper()
	st, ct := sdk.NewInMemoryTransports()
	ss, err := NewServer(api, "test").Connect(tb.Context(), st, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ss.Close() })
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "v0"}, nil).Connect(tb.Context(), ct, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cs.Close() })
	return cs
}

func call(tb testing.TB, cs *sdk.ClientSession, name string, args map[string]any) *sdk.CallToolResult {
	tb.Helper()
	res, err := cs.CallTool(tb.Context(), &sdk.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return res
}

// text returns the text of the result's first block.
func text(tb testing.TB, res *sdk.CallToolResult) string {
	tb.Helper()
	if len(res.Content) == 0 {
		tb.Fatal("no content")
	}
	tc, ok := res.Content[0].(*sdk.TextContent)
	if !ok {
		tb.Fatalf("content[0] is %T, not text", res.Content[0])
	}
	return tc.Text
}

func TestListTools(t *testing.T) {
	cs := connect(t, &fakeAPI{})
	res, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	type schema struct {
		Type       string
		Required   []string
		Properties map[string]struct {
			Type    any
			Enum    []string
			Minimum *float64
		}
		AdditionalProperties any
	}
	want := map[string][]string{
		"create_context": nil,
		"run_code":       {"context_id", "code"},
		"list_contexts":  nil,
		"stop_context":   {"context_id"},
		"upload_file":    {"context_id", "path", "content"},
		"download_file":  {"context_id", "path"},
		"run_command":    {"context_id", "command"},
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
		b, _ := json.Marshal(tool.InputSchema)
		var s schema
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatalf("%s: schema %s: %v", tool.Name, b, err)
		}
		if s.Type != "object" || !slices.Equal(s.Required, want[tool.Name]) || s.AdditionalProperties != nil {
			t.Errorf("%s: schema %s; want required %q and no additionalProperties", tool.Name, b, want[tool.Name])
		}
		if tool.Description == "" {
			t.Errorf("%s has no description", tool.Name)
		}
		switch tool.Name {
		case "upload_file":
			if e := s.Properties["encoding"].Enum; !slices.Equal(e, []string{"text", "base64"}) {
				t.Errorf("encoding enum = %q", e)
			}
		case "run_code", "run_command":
			if m := s.Properties["timeout"].Minimum; m == nil || *m != 0 {
				t.Errorf("%s: timeout minimum = %v", tool.Name, m)
			}
		}
	}
	slices.Sort(names)
	if wantNames := []string{"create_context", "download_file", "list_contexts", "run_code", "run_command", "stop_context", "upload_file"}; !slices.Equal(names, wantNames) {
		t.Errorf("tools = %q, want %q", names, wantNames)
	}
}

func TestContextTools(t *testing.T) {
	created := time.Date(2025, 1, 15, 10, 30, 0, 0, time.UTC)
	c := client.Context{ID: "ctx-1", Type: "jupyter", Language: "python", SessionName: "s", WorkingDir: "/workspace",
		Status: "active", CreatedAt: created, LastActivity: created, ExecutionCount: 2}
	api := &fakeAPI{create: &c, list: []client.Context{c}}
	cs := connect(t, api)
	const contextText = `{
  "context_id": "ctx-1",
  "language": "python",
  "session_name": "s",
  "working_dir": "/workspace",
  "status": "active",
  "created_at": "2025-01-15T10:30:00Z",
  "last_activity": "2025-01-15T10:30:00Z",
  "execution_count": 2
}`

	// Unknown arguments, such as a type a client of the HTTP API would send,
	// are ignored.
	res := call(t, cs, "create_context", map[string]any{"language": "python", "name": "s", "working_dir": "/w", "env": map[string]string{"A": "1"}, "type": "jupyter"})
	if res.IsError || text(t, res) != contextText {
		t.Errorf("create_context = %s (IsError %v)", text(t, res), res.IsError)
	}
	res = call(t, cs, "list_contexts", nil)
	if want := "{\n  \"contexts\": [\n    " + strings.ReplaceAll(contextText, "\n", "\n    ") + "\n  ]\n}"; res.IsError || text(t, res) != want {
		t.Errorf("list_contexts = %s\nwant %s", text(t, res), want)
	}
	res = call(t, cs, "stop_context", map[string]any{"context_id": "ctx-1"})
	if want := "{\n  \"context_id\": \"ctx-1\",\n  \"deleted\": true\n}"; res.IsError || text(t, res) != want {
		t.Errorf("stop_context = %s", text(t, res))
	}
	res = call(t, cs, "stop_context", map[string]any{"context_id": "ctx-2"})
	if want := `{"error":"Context not found","code":"CONTEXT_NOT_FOUND"}`; !res.IsError || text(t, res) != want {
		t.Errorf("stop_context of a missing context = %s (IsError %v), want %s", text(t, res), res.IsError, want)
	}
	wantCalls := []any{
		client.CreateRequest{Language: "python", SessionName: "s", WorkingDir: "/w", Env: map[string]string{"A": "1"}},
		"list", "delete ctx-1", "delete ctx-2",
	}
	if !reflect.DeepEqual(api.calls, wantCalls) {
		t.Errorf("calls = %#v\nwant    %#v", api.calls, wantCalls)
	}
}

func TestRunCode(t *testing.T) {
	api := &fakeAPI{execute: &client.ExecuteResponse{Output: client.Output{Stdout: "1\n"}, Success: true, ExecutionTime: 0.25}}
	cs := connect(t, api)
	res := call(t, cs, "run_code", map[string]any{"context_id": "ctx-1", "code": "print(1)", "timeout": 1.5})
	if want := "{\n  \"stdout\": \"1\\n\",\n  \"stderr\": \"\",\n  \"success\": true,\n  \"execution_time\": 0.25\n}"; res.IsError || text(t, res) != want {
		t.Errorf("run_code = %s\nwant %s", text(t, res), want)
	}
	if want := []any{[]any{"ctx-1", client.ExecuteRequest{Code: "print(1)", Timeout: 1500 * time.Millisecond}}}; !reflect.DeepEqual(api.calls, want) {
		t.Errorf("calls = %#v", api.calls)
	}

	for _, args := range []map[string]any{
		{"context_id": "ctx-1"},                                // no code
		{"context_id": "ctx-1", "code": "1", "timeout": -1},    // negative timeout
		{"context_id": "ctx-1", "code": "1", "timeout": "30s"}, // not a number
	} {
		if res := call(t, cs, "run_code", args); !res.IsError {
			t.Errorf("run_code %v = %s, want a tool error", args, text(t, res))
		}
	}
	if len(api.calls) != 1 {
		t.Errorf("invalid arguments reached the API: %#v", api.calls[1:])
	}

	res = call(t, connect(t, &fakeAPI{}), "run_code", map[string]any{"context_id": "ctx-2", "code": "1"})
	if want := `{"error":"Context not found","code":"CONTEXT_NOT_FOUND"}`; !res.IsError || text(t, res) != want {
		t.Errorf("run_code in a missing context = %s, want %s", text(t, res), want)
	}
}

func TestFileTools(t *testing.T) {
	mtime := time.Date(2025, 1, 15, 10, 30, 0, 0, time.UTC)
	api := &fakeAPI{
		create:   &client.Context{ID: "ctx-1", WorkingDir: "/workspace"},
		upload:   &client.FileInfo{Name: "a.bin", Path: "a.bin", Size: 3, Mode: "0644", ModTime: mtime},
		download: []byte("hello\n"),
	}
	cs := connect(t, api)

	res := call(t, cs, "upload_file", map[string]any{"context_id": "ctx-1", "path": "a.bin", "content": "AAEC", "encoding": "base64"})
	if want := "{\n  \"name\": \"a.bin\",\n  \"path\": \"a.bin\",\n  \"size\": 3,\n  \"mode\": \"0644\",\n  \"mtime\": \"2025-01-15T10:30:00Z\"\n}"; res.IsError || text(t, res) != want {
		t.Errorf("upload_file = %s\nwant %s", text(t, res), want)
	}
	call(t, cs, "upload_file", map[string]any{"context_id": "ctx-1", "path": "b.txt", "content": "AAEC"})
	res = call(t, cs, "upload_file", map[string]any{"context_id": "ctx-1", "path": "c", "content": "not base64!", "encoding": "base64"})
	if !res.IsError || !strings.Contains(text(t, res), `"code":"INVALID_REQUEST"`) {
		t.Errorf("upload_file of bad base64 = %s", text(t, res))
	}
	if res := call(t, cs, "upload_file", map[string]any{"context_id": "ctx-1", "path": "c", "content": "", "encoding": "hex"}); !res.IsError {
		t.Errorf("upload_file with encoding hex = %s, want a tool error", text(t, res))
	}

	res = call(t, cs, "download_file", map[string]any{"context_id": "ctx-1", "path": "b.txt"})
	if res.IsError || text(t, res) != "hello\n" {
		t.Errorf("download_file = %s", text(t, res))
	}
	// Absolute paths in the working dir are made relative, as the API
	// wants them; others are left for the API to refuse.
	call(t, cs, "download_file", map[string]any{"context_id": "ctx-1", "path": "/workspace//d/c.txt"})
	call(t, cs, "download_file", map[string]any{"context_id": "ctx-1", "path": "/workspace"})
	call(t, cs, "download_file", map[string]any{"context_id": "ctx-1", "path": "/workspace2/c.txt"})
	wantCalls := []any{
		[]any{"ctx-1", "a.bin", "\x00\x01\x02"},
		[]any{"ctx-1", "b.txt", "AAEC"},
		[]any{"ctx-1", "b.txt"},
		"get ctx-1", []any{"ctx-1", "d/c.txt"},
		"get ctx-1", []any{"ctx-1", "."},
		"get ctx-1", []any{"ctx-1", "/workspace2/c.txt"},
	}
	if !reflect.DeepEqual(api.calls, wantCalls) {
		t.Errorf("calls = %#v\nwant    %#v", api.calls, wantCalls)
	}

	api.download = make([]byte, maxDownload+1)
	res = call(t, cs, "download_file", map[string]any{"context_id": "ctx-1", "path": "big"})
	if !res.IsError || !strings.Contains(text(t, res), "REQUEST_TOO_LARGE") {
		t.Errorf("download_file of a big file = %s", text(t, res))
	}
	res = call(t, connect(t, &fakeAPI{}), "download_file", map[string]any{"context_id": "ctx-1", "path": "missing"})
	if !res.IsError {
		t.Errorf("download_file of a missing file = %s, want a tool error", text(t, res))
	}
}

func TestRunCommand(t *testing.T) {
	api := &fakeAPI{command: &client.CommandResponse{Stdout: "x\n", Stderr: "", ExitCode: 3, ExecutionTime: 0.5, TimedOut: true}}
	cs := connect(t, api)
	res := call(t, cs, "run_command", map[string]any{"context_id": "ctx-1", "command": "exit 3", "timeout": 2, "cwd": "/tmp", "env": map[string]string{"A": "1"}})
	if want := "{\n  \"stdout\": \"x\\n\",\n  \"stderr\": \"\",\n  \"exit_code\": 3,\n  \"execution_time\": 0.5,\n  \"timed_out\": true\n}"; res.IsError || text(t, res) != want {
		t.Errorf("run_command = %s (IsError %v)\nwant %s", text(t, res), res.IsError, want)
	}
	want := []any{[]any{"ctx-1", client.CommandRequest{Command: "exit 3", Timeout: 2 * time.Second, Cwd: "/tmp", Env: map[string]string{"A": "1"}}}}
	if !reflect.DeepEqual(api.calls, want) {
		t.Errorf("calls = %#v\nwant    %#v", api.calls, want)
	}
}

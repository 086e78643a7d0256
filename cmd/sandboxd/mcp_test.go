package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandboxd/sandboxd/client"
)

// connectMCP connects the SDK's own MCP client over t and closes the
// session at the end of the test.
func connectMCP(tb testing.TB, t sdk.Transport) *sdk.ClientSession {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "sandboxd-test", Version: "v0"}, nil).Connect(ctx, t, nil)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(func() { cs.Close() })
	return cs
}

// callTool calls a tool and returns its result, failing the test on a
// protocol error; a tool error fails it too unless wantError.
func callTool(tb testing.TB, cs *sdk.ClientSession, name string, args map[string]any, wantError bool) *sdk.CallToolResult {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	if res.IsError != wantError {
		tb.Fatalf("%s: IsError = %v, want %v; content %s", name, res.IsError, wantError, toolText(tb, res))
	}
	return res
}

// toolText returns the text of the result's first block.
func toolText(tb testing.TB, res *sdk.CallToolResult) string {
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

// toolJSON decodes the JSON text of the result's first block into out.
func toolJSON(tb testing.TB, res *sdk.CallToolResult, out any) {
	tb.Helper()
	if err := json.Unmarshal([]byte(toolText(tb, res)), out); err != nil {
		tb.Fatalf("result %q: %v", toolText(tb, res), err)
	}
}

// createContext calls create_context. The daemon's shutdown removes the
// context should the test not stop it.
func createContext(tb testing.TB, cs *sdk.ClientSession) string {
	tb.Helper()
	var c struct {
		ContextID string `json:"context_id"`
		Status    string `json:"status"`
		Language  string `json:"language"`
	}
	toolJSON(tb, callTool(tb, cs, "create_context", map[string]any{"language": "python", "name": "mcp-test"}, false), &c)
	if c.ContextID == "" || c.Language != "python" {
		tb.Fatalf("create_context = %+v", c)
	}
	return c.ContextID
}

type runCodeJSON struct {
	Stdout  string   `json:"stdout"`
	Stderr  string   `json:"stderr"`
	Success bool     `json:"success"`
	Results []string `json:"results"`
	Error   *struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"error"`
}

func TestMCP(t *testing.T) {
	d := startDaemon(t, "--pool", "python=1")

	t.Run("streamable HTTP", func(t *testing.T) {
		cs := connectMCP(t, &sdk.StreamableClientTransport{Endpoint: d.url + "/mcp"})

		tools, err := cs.ListTools(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tool := range tools.Tools {
			names = append(names, tool.Name)
		}
		slices.Sort(names)
		if want := []string{"create_context", "download_file", "list_contexts", "run_code", "run_command", "stop_context", "upload_file"}; !slices.Equal(names, want) {
			t.Errorf("tools = %q, want %q", names, want)
		}

		id := createContext(t, cs)

		var out runCodeJSON
		toolJSON(t, callTool(t, cs, "run_code", map[string]any{"context_id": id, "code": "x = 100\nprint(1)"}, false), &out)
		if !strings.Contains(out.Stdout, "1\n") || !out.Success {
			t.Errorf("run_code print(1) = %+v", out)
		}
		out = runCodeJSON{}
		toolJSON(t, callTool(t, cs, "run_code", map[string]any{"context_id": id, "code": "x * 2"}, false), &out)
		if !slices.Equal(out.Results, []string{"200"}) {
			t.Errorf("run_code x * 2 = %+v, want results [200]", out)
		}
		out = runCodeJSON{}
		toolJSON(t, callTool(t, cs, "run_code", map[string]any{"context_id": id, "code": "1/0"}, false), &out)
		if out.Success || out.Error == nil || out.Error.Name != "ZeroDivisionError" || !strings.Contains(out.Stderr, "ZeroDivisionError") {
			t.Errorf("run_code 1/0 = %+v", out)
		}

		res := callTool(t, cs, "run_code", map[string]any{"context_id": id, "code": "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()", "timeout": 60}, false)
		var images []*sdk.ImageContent
		for _, c := range res.Content[1:] {
			if img, ok := c.(*sdk.ImageContent); ok {
				images = append(images, img)
			}
		}
		if len(images) != 1 || images[0].MIMEType != "image/png" || !strings.HasPrefix(string(images[0].Data), "\x89PNG") {
			t.Errorf("matplotlib figure: %d images in %d content blocks; want one PNG", len(images), len(res.Content))
		}

		var list struct {
			Contexts []struct {
				ContextID      string `json:"context_id"`
				ExecutionCount int    `json:"execution_count"`
			} `json:"contexts"`
		}
		toolJSON(t, callTool(t, cs, "list_contexts", nil, false), &list)
		if !slices.ContainsFunc(list.Contexts, func(c struct {
			ContextID      string `json:"context_id"`
			ExecutionCount int    `json:"execution_count"`
		}) bool {
			return c.ContextID == id && c.ExecutionCount == 4
		}) {
			t.Errorf("list_contexts = %+v, want %s with 4 executions", list, id)
		}

		callTool(t, cs, "stop_context", map[string]any{"context_id": id}, false)
		res = callTool(t, cs, "run_code", map[string]any{"context_id": id, "code": "1"}, true)
		if got, want := toolText(t, res), `{"error":"Context not found","code":"CONTEXT_NOT_FOUND"}`; got != want {
			t.Errorf("run_code after stop_context = %s, want %s", got, want)
		}
		if status := d.call(t, "GET", "/api/v1/contexts/"+id, nil, nil); status != http.StatusNotFound {
			t.Errorf("GET the stopped context: status %d, want 404", status)
		}
	})

	t.Run("files and commands", func(t *testing.T) {
		cs := connectMCP(t, &sdk.StreamableClientTransport{Endpoint: d.url + "/mcp"})
		id := createContext(t, cs)

		var fi struct {
			Path string `json:"path"`
			Size int64  `json:"size"`
			Mode string `json:"mode"`
		}
		toolJSON(t, callTool(t, cs, "upload_file", map[string]any{"context_id": id, "path": "data/hello.txt", "content": "hello\n"}, false), &fi)
		if fi.Path != "data/hello.txt" || fi.Size != 6 || fi.Mode == "" {
			t.Errorf("upload_file = %+v", fi)
		}
		var out runCodeJSON
		toolJSON(t, callTool(t, cs, "run_code", map[string]any{"context_id": id, "code": "print(open('data/hello.txt').read(), end='')"}, false), &out)
		if out.Stdout != "hello\n" {
			t.Errorf("reading the uploaded file: %+v", out)
		}
		if got := toolText(t, callTool(t, cs, "download_file", map[string]any{"context_id": id, "path": "data/hello.txt"}, false)); got != "hello\n" {
			t.Errorf("download_file of text = %q", got)
		}

		// Binary, by an absolute path in the working dir.
		callTool(t, cs, "upload_file", map[string]any{"context_id": id, "path": "/workspace/b.bin", "content": "AAEC/w==", "encoding": "base64"}, false)
		res := callTool(t, cs, "download_file", map[string]any{"context_id": id, "path": "b.bin"}, false)
		if r, ok := res.Content[len(res.Content)-1].(*sdk.EmbeddedResource); !ok || string(r.Resource.Blob) != "\x00\x01\x02\xff" {
			t.Errorf("download_file of binary: %#v", res.Content)
		}

		// A figure saved to a file comes back as an image.
		callTool(t, cs, "run_code", map[string]any{"context_id": id, "code": "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.savefig('plot.png')", "timeout": 60}, false)
		res = callTool(t, cs, "download_file", map[string]any{"context_id": id, "path": "plot.png"}, false)
		if img, ok := res.Content[len(res.Content)-1].(*sdk.ImageContent); !ok || img.MIMEType != "image/png" {
			t.Errorf("download_file of a PNG: %#v", res.Content)
		}

		for path, code := range map[string]string{"nope.txt": "FILE_NOT_FOUND", "../etc/passwd": "INVALID_PATH"} {
			res := callTool(t, cs, "download_file", map[string]any{"context_id": id, "path": path}, true)
			if got := toolText(t, res); !strings.Contains(got, `"code":"`+code+`"`) {
				t.Errorf("download_file %s = %s, want %s", path, got, code)
			}
		}

		var cmd struct {
			Stdout   string `json:"stdout"`
			Stderr   string `json:"stderr"`
			ExitCode int    `json:"exit_code"`
		}
		toolJSON(t, callTool(t, cs, "run_command", map[string]any{"context_id": id, "command": "echo hi; echo err >&2; exit 3"}, false), &cmd)
		if cmd.Stdout != "hi\n" || cmd.Stderr != "err\n" || cmd.ExitCode != 3 {
			t.Errorf("run_command = %+v", cmd)
		}
		cmd.Stdout = ""
		toolJSON(t, callTool(t, cs, "run_command", map[string]any{"context_id": id, "command": "ls", "cwd": "data", "timeout": 10}, false), &cmd)
		if cmd.Stdout != "hello.txt\n" || cmd.ExitCode != 0 {
			t.Errorf("run_command ls in data = %+v", cmd)
		}

		// The client's file calls the tools do not use, against the real API.
		c := client.New(d.url)
		files, err := c.ListFiles(t.Context(), id, "data")
		if err != nil || len(files) != 1 || files[0].Name != "hello.txt" || files[0].Path != "data/hello.txt" || files[0].Size != 6 || files[0].IsDir || files[0].ModTime.IsZero() {
			t.Errorf("ListFiles = %+v, %v", files, err)
		}
		if err := c.DeleteFile(t.Context(), id, "data/hello.txt"); err != nil {
			t.Errorf("DeleteFile: %v", err)
		}
		if _, err := c.DownloadFile(t.Context(), id, "data/hello.txt"); !client.IsCode(err, client.CodeFileNotFound) {
			t.Errorf("DownloadFile of a deleted file: %v, want FILE_NOT_FOUND", err)
		}
		callTool(t, cs, "stop_context", map[string]any{"context_id": id}, false)
	})

	t.Run("stdio", func(t *testing.T) {
		cs, done := startStdio(t, "--url", d.url)
		id := createContext(t, cs)
		var out runCodeJSON
		toolJSON(t, callTool(t, cs, "run_code", map[string]any{"context_id": id, "code": "print(1)"}, false), &out)
		if out.Stdout != "1\n" {
			t.Errorf("run_code print(1) = %+v", out)
		}
		callTool(t, cs, "stop_context", map[string]any{"context_id": id}, false)
		cs.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("runMCP returned %v after the client closed stdin", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("runMCP did not return after the client closed stdin")
		}
	})
}

// startStdio runs `sandboxd mcp args...` in this process, its stdin and
// stdout piped to an SDK client, and returns the session and what runMCP
// returns.
func startStdio(tb testing.TB, args ...string) (*sdk.ClientSession, <-chan error) {
	tb.Helper()
	toServer, fromClient := io.Pipe()
	toClient, fromServer := io.Pipe()
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	go func() {
		done <- runMCP(ctx, args, func(string) string { return "" }, toServer, fromServer, os.Stderr)
		fromServer.Close()
	}()
	return connectMCP(tb, &sdk.IOTransport{Reader: toClient, Writer: fromClient}), done
}

func TestMCPAuth(t *testing.T) {
	const key = "mcp-test-key"
	d := startDaemon(t, "--pool", "python=1", "--api-key", key)

	// Without the key, /mcp is refused like the rest of the API.
	resp, err := http.Post(d.url+"/mcp", "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST /mcp without the key: status %d, want 401", resp.StatusCode)
	}

	// With it, the tools work: their calls of the API carry the daemon's
	// own key.
	withKey := &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+key)
		return http.DefaultTransport.RoundTrip(r)
	})}
	cs := connectMCP(t, &sdk.StreamableClientTransport{Endpoint: d.url + "/mcp", HTTPClient: withKey})
	id := createContext(t, cs)
	var out runCodeJSON
	toolJSON(t, callTool(t, cs, "run_code", map[string]any{"context_id": id, "code": "print(1)"}, false), &out)
	if out.Stdout != "1\n" {
		t.Errorf("run_code print(1) = %+v", out)
	}

	// The stdio mode takes the key as --api-key.
	stdio, _ := startStdio(t, "--url", d.url, "--api-key", key)
	var list struct {
		Contexts []struct {
			ContextID string `json:"context_id"`
		} `json:"contexts"`
	}
	toolJSON(t, callTool(t, stdio, "list_contexts", nil, false), &list)
	if len(list.Contexts) != 1 || list.Contexts[0].ContextID != id {
		t.Errorf("list_contexts over stdio = %+v, want %s", list, id)
	}
	stdioNoKey, _ := startStdio(t, "--url", d.url)
	res := callTool(t, stdioNoKey, "list_contexts", nil, true)
	if !strings.Contains(toolText(t, res), `"code":"UNAUTHORIZED"`) {
		t.Errorf("list_contexts over stdio without the key = %s, want UNAUTHORIZED", toolText(t, res))
	}
	callTool(t, cs, "stop_context", map[string]any{"context_id": id}, false)
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestMCPShutdownEndsStreams holds a session's GET stream open, as MCP
// clients do between calls, and checks that a graceful shutdown ends it
// rather than waiting out --shutdown-grace for it.
func TestMCPShutdownEndsStreams(t *testing.T) {
	d := startDaemon(t, "--pool", "python=0")
	post := func(session, body string) *http.Response {
		t.Helper()
		req, err := http.NewRequest("POST", d.url+"/mcp", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
			req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if _, err := io.ReadAll(resp.Body); err != nil || resp.StatusCode/100 != 2 {
			t.Fatalf("POST /mcp %s: status %d, %v", body, resp.StatusCode, err)
		}
		return resp
	}
	session := post("", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}`).Header.Get("Mcp-Session-Id")
	if session == "" {
		t.Fatal("initialize answered no Mcp-Session-Id")
	}
	post(session, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)

	req, err := http.NewRequest("GET", d.url+"/mcp", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", session)
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("GET /mcp: status %d, Content-Type %q", resp.StatusCode, ct)
	}

	start := time.Now()
	d.shutdown(t) // fails the test if run returns an error, such as Shutdown's deadline
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("shutdown took %v with a GET stream open", took)
	}
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Errorf("the GET stream ended with %v, want a clean end", err)
	}
}

// TestMCPStdioFlags runs `sandboxd mcp` against a fake daemon: no Docker
// needed.
func TestMCPStdioFlags(t *testing.T) {
	var (
		mu    sync.Mutex
		auths []string
	)
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths = append(auths, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		switch r.URL.Path {
		case "/readyz":
			io.WriteString(w, "OK")
		case "/api/v1/contexts":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"contexts":[]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer fake.Close()

	// The URL and key may come from the environment, as the daemon's flags do.
	env := map[string]string{"SANDBOXD_URL": fake.URL, "SANDBOXD_API_KEY": "from-env"}
	toServer, fromClient := io.Pipe()
	toClient, fromServer := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- runMCP(t.Context(), nil, func(k string) string { return env[k] }, toServer, fromServer, io.Discard)
		fromServer.Close()
	}()
	cs := connectMCP(t, &sdk.IOTransport{Reader: toClient, Writer: fromClient})
	if got := toolText(t, callTool(t, cs, "list_contexts", nil, false)); got != "{\n  \"contexts\": []\n}" {
		t.Errorf("list_contexts = %s", got)
	}
	cs.Close()
	if err := <-done; err != nil {
		t.Errorf("runMCP = %v", err)
	}
	mu.Lock()
	if want := []string{"GET /readyz Bearer from-env", "GET /api/v1/contexts Bearer from-env"}; !slices.Equal(auths, want) {
		t.Errorf("requests = %q, want %q", auths, want)
	}
	mu.Unlock()

	for _, args := range [][]string{{"mcp", "--basic-auth", "no-colon"}, {"mcp", "extra"}, {"mcp", "--no-such-flag"}} {
		if err := run(t.Context(), args, func(string) string { return "" }, io.Discard, io.Discard); err == nil {
			t.Errorf("run %q succeeded", args)
		}
	}
}

package mcp

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandboxd/sandboxd/client"
)

// pngBytes is the start of a PNG file: enough for http.DetectContentType.
var pngBytes = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01")

func result(mimeTypes ...string) client.Result {
	r := client.Result{Type: "display_data", Data: map[string]json.RawMessage{}}
	for i := 0; i+1 < len(mimeTypes); i += 2 {
		b, _ := json.Marshal(mimeTypes[i+1])
		r.Data[mimeTypes[i]] = b
	}
	return r
}

// decodeText decodes the JSON of a text block.
func decodeText(tb testing.TB, c sdk.Content) map[string]any {
	tb.Helper()
	tc, ok := c.(*sdk.TextContent)
	if !ok {
		tb.Fatalf("content %T is not text", c)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(tc.Text), &m); err != nil {
		tb.Fatalf("text %q is not JSON: %v", tc.Text, err)
	}
	return m
}

func TestExecutionResult(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString(pngBytes)
	tests := []struct {
		name       string
		resp       client.ExecuteResponse
		wantText   map[string]any
		wantImages []*sdk.ImageContent
	}{
		{
			name: "print",
			resp: client.ExecuteResponse{Output: client.Output{Stdout: "1\n"}, Success: true, ExecutionTime: 0.01},
			wantText: map[string]any{
				"stdout": "1\n", "stderr": "", "success": true, "execution_time": 0.01,
			},
		},
		{
			name: "expression value and a figure",
			resp: client.ExecuteResponse{Success: true, ExecutionTime: 0.5, Results: []client.Result{
				result("text/plain", "<Figure size 640x480 with 1 Axes>", "image/png", b64[:10]+"\n"+b64[10:]+"\n"),
				result("text/plain", "200"),
				result("image/jpeg", b64),
			}},
			wantText: map[string]any{
				"stdout": "", "stderr": "", "success": true, "execution_time": 0.5, "results": []any{"200"},
			},
			wantImages: []*sdk.ImageContent{{Data: pngBytes, MIMEType: "image/png"}, {Data: pngBytes, MIMEType: "image/jpeg"}},
		},
		{
			name: "bad image data",
			resp: client.ExecuteResponse{Success: true, Results: []client.Result{result("image/png", "!!", "text/plain", "<Figure>")}},
			wantText: map[string]any{
				"stdout": "", "stderr": "", "success": true, "execution_time": 0.0,
				"results": []any{"[could not decode the image/png result: illegal base64 data at input byte 0]", "<Figure>"},
			},
		},
		{
			name: "exception: the traceback is in stderr",
			resp: client.ExecuteResponse{
				Output: client.Output{Stderr: "Traceback\nZeroDivisionError: division by zero\n"},
				Error:  &client.ExecutionError{Name: "ZeroDivisionError", Value: "division by zero", Traceback: "Traceback\nZeroDivisionError: division by zero"},
			},
			wantText: map[string]any{
				"stdout": "", "stderr": "Traceback\nZeroDivisionError: division by zero\n", "success": false, "execution_time": 0.0,
				"error": map[string]any{"name": "ZeroDivisionError", "value": "division by zero"},
			},
		},
		{
			name: "error whose traceback stderr lacks; truncated; restarted",
			resp: client.ExecuteResponse{
				Error:     &client.ExecutionError{Name: "KernelDied", Value: "the kernel died", Traceback: "tb"},
				Truncated: true, Restarted: true,
			},
			wantText: map[string]any{
				"stdout": "", "stderr": "", "success": false, "execution_time": 0.0, "truncated": true, "restarted": true,
				"error": map[string]any{"name": "KernelDied", "value": "the kernel died", "traceback": "tb"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := executionResult(&tt.resp)
			if got.IsError {
				t.Error("IsError is set")
			}
			if len(got.Content) != 1+len(tt.wantImages) {
				t.Fatalf("%d content blocks, want %d", len(got.Content), 1+len(tt.wantImages))
			}
			if text := decodeText(t, got.Content[0]); !reflect.DeepEqual(text, tt.wantText) {
				t.Errorf("text = %v\nwant   %v", text, tt.wantText)
			}
			for i, want := range tt.wantImages {
				if img, ok := got.Content[1+i].(*sdk.ImageContent); !ok || !reflect.DeepEqual(img, want) {
					t.Errorf("content %d = %#v, want %#v", 1+i, got.Content[1+i], want)
				}
			}
		})
	}
}

func TestImageOnTheWire(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString(pngBytes)
	got := executionResult(&client.ExecuteResponse{Success: true, Results: []client.Result{result("image/png", b64)}})
	b, err := json.Marshal(got.Content[1])
	if err != nil {
		t.Fatal(err)
	}
	// The data must be the base64 Jupyter sent, not base64 of it again.
	if want := fmt.Sprintf(`{"type":"image","mimeType":"image/png","data":%q}`, b64); string(b) != want {
		t.Errorf("image = %s\nwant    %s", b, want)
	}
}

func TestFileResult(t *testing.T) {
	t.Run("text", func(t *testing.T) {
		got := fileResult("ctx-1", "a.txt", []byte("héllo\n"))
		if len(got.Content) != 1 || got.Content[0].(*sdk.TextContent).Text != "héllo\n" {
			t.Errorf("content = %#v", got.Content)
		}
	})
	t.Run("image", func(t *testing.T) {
		got := fileResult("ctx-1", "plot.png", pngBytes)
		if len(got.Content) != 2 {
			t.Fatalf("content = %#v", got.Content)
		}
		if img, ok := got.Content[1].(*sdk.ImageContent); !ok || img.MIMEType != "image/png" || string(img.Data) != string(pngBytes) {
			t.Errorf("content[1] = %#v", got.Content[1])
		}
	})
	t.Run("binary", func(t *testing.T) {
		data := []byte{0, 1, 2, 0xff}
		got := fileResult("ctx-1", "/workspace/d ir/x.bin", data)
		if len(got.Content) != 2 {
			t.Fatalf("content = %#v", got.Content)
		}
		if note := got.Content[0].(*sdk.TextContent).Text; note != "/workspace/d ir/x.bin is a binary file of 4 bytes (application/octet-stream)." {
			t.Errorf("note = %q", note)
		}
		res, ok := got.Content[1].(*sdk.EmbeddedResource)
		want := &sdk.ResourceContents{URI: "sandboxd://contexts/ctx-1/files//workspace/d%20ir/x.bin", MIMEType: "application/octet-stream", Blob: data}
		if !ok || !reflect.DeepEqual(res.Resource, want) {
			t.Errorf("content[1] = %#v, want resource %#v", got.Content[1], want)
		}
	})
}

func TestErrorResult(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"API error", fmt.Errorf("execute: %w", &client.Error{Status: 404, Code: client.CodeContextNotFound, Message: "Context not found"}),
			`{"error":"Context not found","code":"CONTEXT_NOT_FOUND"}`},
		{"not an API body", &client.Error{Status: 502, Message: "bad gateway"},
			`{"error":"sandboxd: HTTP 502: bad gateway"}`},
		{"no daemon", errors.New("create context: dial tcp 127.0.0.1:8080: connection refused"),
			`{"error":"create context: dial tcp 127.0.0.1:8080: connection refused"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := errorResult(tt.err)
			if !got.IsError || got.GetError() != tt.err {
				t.Errorf("IsError = %v, GetError = %v", got.IsError, got.GetError())
			}
			if len(got.Content) != 1 || got.Content[0].(*sdk.TextContent).Text != tt.want {
				t.Errorf("content = %#v, want text %s", got.Content, tt.want)
			}
		})
	}
}

package mcp

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandboxd/sandboxd/client"
)

// imageTypes are the MIME types of results and files that go back as image
// content, which models can look at, in order of preference.
var imageTypes = []string{"image/png", "image/jpeg", "image/gif", "image/webp"}

// contextOutput is a context as the tools show it.
type contextOutput struct {
	ContextID      string    `json:"context_id"`
	Language       string    `json:"language"`
	SessionName    string    `json:"session_name,omitempty"`
	WorkingDir     string    `json:"working_dir"`
	Status         string    `json:"status"`
	CreatedAt      time.Time `json:"created_at"`
	LastActivity   time.Time `json:"last_activity"`
	ExecutionCount int       `json:"execution_count"`
	Network        bool      `json:"network,omitempty"`
}

func newContextOutput(c client.Context) contextOutput {
	return contextOutput{
		ContextID: c.ID, Language: c.Language, SessionName: c.SessionName, WorkingDir: c.WorkingDir,
		Status: c.Status, CreatedAt: c.CreatedAt, LastActivity: c.LastActivity, ExecutionCount: c.ExecutionCount, Network: c.Network,
	}
}

type contextList struct {
	Contexts []contextOutput `json:"contexts"`
}

type stopOutput struct {
	ContextID string `json:"context_id"`
	Deleted   bool   `json:"deleted"`
}

// fileOutput is a file as upload_file shows it.
type fileOutput struct {
	Name    string    `json:"name"`
	Path    string    `json:"path"`
	Size    int64     `json:"size"`
	Mode    string    `json:"mode"`
	ModTime time.Time `json:"mtime"`
}

func newFileOutput(f client.FileInfo) fileOutput {
	return fileOutput{Name: f.Name, Path: f.Path, Size: f.Size, Mode: f.Mode, ModTime: f.ModTime}
}

// executionOutput is the JSON text run_code answers.
type executionOutput struct {
	Stdout        string  `json:"stdout"`
	Stderr        string  `json:"stderr"`
	Success       bool    `json:"success"`
	ExecutionTime float64 `json:"execution_time"`
	// Results holds the text/plain form of each result that is not sent
	// as an image: the value of the last expression, displayed objects.
	Results   []string        `json:"results,omitempty"`
	Error     *executionError `json:"error,omitempty"`
	Truncated bool            `json:"truncated,omitempty"`
	Restarted bool            `json:"restarted,omitempty"`
}

type executionError struct {
	Name      string `json:"name"`
	Value     string `json:"value"`
	Traceback string `json:"traceback,omitempty"`
}

// executionResult makes run_code's answer of an execution: a text block of
// JSON, then an image block for each result that is an image, in the order
// the code displayed them.
func executionResult(r *client.ExecuteResponse) *sdk.CallToolResult {
	out := executionOutput{
		Stdout: r.Output.Stdout, Stderr: r.Output.Stderr, Success: r.Success, ExecutionTime: r.ExecutionTime,
		Truncated: r.Truncated, Restarted: r.Restarted,
	}
	if e := r.Error; e != nil {
		out.Error = &executionError{Name: e.Name, Value: e.Value}
		// The traceback is in stderr already as a rule: no need to say it twice.
		if !strings.Contains(r.Output.Stderr, e.Traceback) {
			out.Error.Traceback = e.Traceback
		}
	}
	var images []sdk.Content
	for _, res := range r.Results {
		img, err := resultImage(res)
		switch {
		case img != nil:
			images = append(images, img)
			continue
		case err != nil:
			out.Results = append(out.Results, fmt.Sprintf("[%v]", err))
		}
		if s, ok := res.Text("text/plain"); ok {
			out.Results = append(out.Results, s)
		}
	}
	result := jsonResult(out)
	result.Content = append(result.Content, images...)
	return result
}

// resultImage returns the image of a rich result, or nil when it has none.
// Jupyter sends images base64-encoded, sometimes with line breaks; MCP
// wants the bytes.
func resultImage(res client.Result) (*sdk.ImageContent, error) {
	for _, mt := range imageTypes {
		s, ok := res.Text(mt)
		if !ok {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
		if err != nil {
			return nil, fmt.Errorf("could not decode the %s result: %v", mt, err)
		}
		return &sdk.ImageContent{Data: b, MIMEType: mt}, nil
	}
	return nil, nil
}

// commandResult makes run_command's answer. A command that fails is not a
// tool error: its exit code says so, as a raising execution's success does.
func commandResult(r *client.CommandResponse) *sdk.CallToolResult {
	return jsonResult(r)
}

// fileResult makes download_file's answer of the file at path: text as it
// is, an image as image content, and any other bytes as an embedded
// resource (base64 on the wire), after a line saying what they are.
func fileResult(id, path string, b []byte) *sdk.CallToolResult {
	if utf8.Valid(b) && !bytes.ContainsRune(b, 0) {
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: string(b)}}}
	}
	mt := http.DetectContentType(b)
	note := &sdk.TextContent{Text: fmt.Sprintf("%s is a binary file of %d bytes (%s).", path, len(b), mt)}
	for _, it := range imageTypes {
		if mt == it {
			return &sdk.CallToolResult{Content: []sdk.Content{note, &sdk.ImageContent{Data: b, MIMEType: mt}}}
		}
	}
	return &sdk.CallToolResult{Content: []sdk.Content{note, &sdk.EmbeddedResource{
		Resource: &sdk.ResourceContents{URI: fileURI(id, path), MIMEType: mt, Blob: b},
	}}}
}

// fileURI names a file of a context, as the path of the HTTP API does.
func fileURI(id, path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "sandboxd://contexts/" + url.PathEscape(id) + "/files/" + strings.Join(segs, "/")
}

// jsonResult answers v as indented JSON text.
func jsonResult(v any) *sdk.CallToolResult {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return errorResult(fmt.Errorf("encode result: %w", err))
	}
	return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: string(b)}}}
}

// errorResult answers err as a tool error whose text is the HTTP API's
// error body, {"error": message, "code": code}, so that a model sees the
// same codes a program of the API does. An error that did not come from
// the API (the daemon cannot be reached, say) has no code.
func errorResult(err error) *sdk.CallToolResult {
	body := struct {
		Error string `json:"error"`
		Code  string `json:"code,omitempty"`
	}{Error: err.Error()}
	var e *client.Error
	if errors.As(err, &e) && e.Code != "" {
		body.Error, body.Code = e.Message, e.Code
	}
	b, _ := json.Marshal(body) // two strings: cannot fail
	res := &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: string(b)}}}
	res.SetError(err)
	return res
}

package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// FileInfo describes a file or directory in a context.
type FileInfo struct {
	Name    string    `json:"name"`
	Path    string    `json:"path"` // relative to the context's working dir
	Size    int64     `json:"size"`
	Mode    string    `json:"mode"` // permission bits in octal, such as "0644"
	ModTime time.Time `json:"mtime"`
	IsDir   bool      `json:"is_dir"`
}

// CommandRequest is a shell command to run in a context, beside its kernel.
type CommandRequest struct {
	Command string
	// Timeout bounds the run; 0 leaves it to the server's default. It
	// travels as seconds.
	Timeout time.Duration
	// Env holds environment variables for this command only.
	Env map[string]string
	// Cwd is the directory to run in; empty is the context's working dir.
	Cwd string
}

// MarshalJSON writes the request as the server reads it.
func (r CommandRequest) MarshalJSON() ([]byte, error) {
	type wire struct {
		Command string            `json:"command"`
		Timeout float64           `json:"timeout,omitempty"`
		Env     map[string]string `json:"env,omitempty"`
		Cwd     string            `json:"cwd,omitempty"`
	}
	return json.Marshal(wire{Command: r.Command, Timeout: r.Timeout.Seconds(), Env: r.Env, Cwd: r.Cwd})
}

// CommandResponse is the outcome of a command. A command that fails or
// times out is not an error of the call: ExitCode and TimedOut say so.
type CommandResponse struct {
	Stdout        string  `json:"stdout"`
	Stderr        string  `json:"stderr"`
	ExitCode      int     `json:"exit_code"`
	ExecutionTime float64 `json:"execution_time"`      // seconds
	Truncated     bool    `json:"truncated,omitempty"` // stdout or stderr hit the server's cap
	TimedOut      bool    `json:"timed_out,omitempty"`
}

// UploadFile writes body to path in the context, creating or replacing the
// file and the directories it needs, and returns what was written. Paths
// of files are relative to the context's working dir: an absolute one, or
// one with .. segments, is an *Error with CodeInvalidPath.
func (c *Client) UploadFile(ctx context.Context, id, path string, body io.Reader) (*FileInfo, error) {
	resp, err := c.sendBody(ctx, http.MethodPut, filePath(id, path), body, "application/octet-stream", "", "upload file")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out FileInfo
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("upload file: decode response: %w", err)
	}
	return &out, nil
}

// DownloadFile returns the content of the file at path in the context. The
// caller must close it. A missing file is an *Error with CodeFileNotFound.
func (c *Client) DownloadFile(ctx context.Context, id, path string) (io.ReadCloser, error) {
	resp, err := c.sendBody(ctx, http.MethodGet, filePath(id, path), nil, "", "", "download file")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// ListFiles lists the directory dir in the context; an empty dir is the
// context's working dir.
func (c *Client) ListFiles(ctx context.Context, id, dir string) ([]FileInfo, error) {
	p := contextPath(id, "/files")
	if dir != "" {
		p += "?" + url.Values{"path": {dir}}.Encode()
	}
	var out struct {
		Files []FileInfo `json:"files"`
	}
	err := c.do(ctx, http.MethodGet, p, nil, &out, "list files")
	return out.Files, err
}

// DeleteFile removes the file at path in the context.
func (c *Client) DeleteFile(ctx context.Context, id, path string) error {
	return c.do(ctx, http.MethodDelete, filePath(id, path), nil, nil, "delete file")
}

// RunCommand runs a shell command in the context's container and returns
// when it has finished.
func (c *Client) RunCommand(ctx context.Context, id string, req CommandRequest) (*CommandResponse, error) {
	var out CommandResponse
	if err := c.do(ctx, http.MethodPost, contextPath(id, "/commands"), req, &out, "run command"); err != nil {
		return nil, err
	}
	return &out, nil
}

// filePath is the URL path of a file in a context: each segment of path
// escaped, the slashes kept as they are, for the server to judge.
func filePath(id, path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return contextPath(id, "/files/"+strings.Join(segs, "/"))
}

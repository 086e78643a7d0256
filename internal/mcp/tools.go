package mcp

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandboxd/sandboxd/client"
)

// maxDownload caps the files download_file returns: its answer is one JSON
// message, held in memory on both sides and read by a model.
const maxDownload = 8 << 20

// Encodings of upload_file's content.
const (
	encodingText   = "text"
	encodingBase64 = "base64"
)

// tools holds the tool handlers. Every handler answers an error of the API
// as a tool error (IsError) whose text carries the sandboxd code, never as
// a protocol error: the model should see it and react.
type tools struct {
	api API
}

type createContextInput struct {
	Language   string            `json:"language,omitempty" jsonschema:"kernel language: python (the default), r, bash or javascript (also nodejs or js)"`
	Name       string            `json:"name,omitempty" jsonschema:"session name: a label of your choice, shown by list_contexts"`
	WorkingDir string            `json:"working_dir,omitempty" jsonschema:"working directory of the kernel, an absolute path (default /workspace)"`
	Env        map[string]string `json:"env,omitempty" jsonschema:"environment variables for the kernel and every process it starts"`
	Network    bool              `json:"network,omitempty" jsonschema:"true to reach the public internet over HTTP(S), e.g. for pip install; the server must allow it"`
}

func (t tools) createContext(ctx context.Context, _ *sdk.CallToolRequest, in createContextInput) (*sdk.CallToolResult, any, error) {
	c, err := t.api.CreateContext(ctx, client.CreateRequest{
		Language: in.Language, SessionName: in.Name, WorkingDir: in.WorkingDir, Env: in.Env, Network: in.Network,
	})
	if err != nil {
		return errorResult(err), nil, nil
	}
	return jsonResult(newContextOutput(*c)), nil, nil
}

type contextIDInput struct {
	ContextID string `json:"context_id" jsonschema:"id of the context, as create_context returned it"`
}

type runCodeInput struct {
	ContextID string  `json:"context_id" jsonschema:"id of the context, as create_context returned it"`
	Code      string  `json:"code" jsonschema:"code to run, in the context's language"`
	Timeout   float64 `json:"timeout,omitempty" jsonschema:"seconds the code may run before it is interrupted (default: the daemon's, 30 unless configured)"`
}

func (t tools) runCode(ctx context.Context, _ *sdk.CallToolRequest, in runCodeInput) (*sdk.CallToolResult, any, error) {
	r, err := t.api.Execute(ctx, in.ContextID, client.ExecuteRequest{Code: in.Code, Timeout: seconds(in.Timeout)})
	if err != nil {
		return errorResult(err), nil, nil
	}
	return executionResult(r), nil, nil
}

type listContextsInput struct{}

func (t tools) listContexts(ctx context.Context, _ *sdk.CallToolRequest, _ listContextsInput) (*sdk.CallToolResult, any, error) {
	cs, err := t.api.ListContexts(ctx)
	if err != nil {
		return errorResult(err), nil, nil
	}
	out := contextList{Contexts: []contextOutput{}}
	for _, c := range cs {
		out.Contexts = append(out.Contexts, newContextOutput(c))
	}
	return jsonResult(out), nil, nil
}

func (t tools) stopContext(ctx context.Context, _ *sdk.CallToolRequest, in contextIDInput) (*sdk.CallToolResult, any, error) {
	if err := t.api.DeleteContext(ctx, in.ContextID); err != nil {
		return errorResult(err), nil, nil
	}
	return jsonResult(stopOutput{ContextID: in.ContextID, Deleted: true}), nil, nil
}

type uploadFileInput struct {
	ContextID string `json:"context_id" jsonschema:"id of the context, as create_context returned it"`
	Path      string `json:"path" jsonschema:"where to write the file, relative to the context's working directory (an absolute path inside it works too); missing directories are made"`
	Content   string `json:"content" jsonschema:"the file's content: text, or base64 when encoding is base64"`
	Encoding  string `json:"encoding,omitempty" jsonschema:"how content is encoded: text (the default) or base64"`
}

func (t tools) uploadFile(ctx context.Context, _ *sdk.CallToolRequest, in uploadFileInput) (*sdk.CallToolResult, any, error) {
	body := []byte(in.Content)
	switch in.Encoding {
	case "", encodingText:
	case encodingBase64:
		var err error
		if body, err = base64.StdEncoding.DecodeString(in.Content); err != nil {
			return errorResult(&client.Error{Code: client.CodeInvalidRequest, Message: fmt.Sprintf("content is not valid base64: %v", err)}), nil, nil
		}
	default:
		return errorResult(&client.Error{Code: client.CodeInvalidRequest, Message: fmt.Sprintf("encoding must be text or base64, not %q", in.Encoding)}), nil, nil
	}
	p, err := t.relPath(ctx, in.ContextID, in.Path)
	if err != nil {
		return errorResult(err), nil, nil
	}
	fi, err := t.api.UploadFile(ctx, in.ContextID, p, bytes.NewReader(body))
	if err != nil {
		return errorResult(err), nil, nil
	}
	return jsonResult(newFileOutput(*fi)), nil, nil
}

type downloadFileInput struct {
	ContextID string `json:"context_id" jsonschema:"id of the context, as create_context returned it"`
	Path      string `json:"path" jsonschema:"the file to read, relative to the context's working directory (an absolute path inside it works too)"`
}

func (t tools) downloadFile(ctx context.Context, _ *sdk.CallToolRequest, in downloadFileInput) (*sdk.CallToolResult, any, error) {
	p, err := t.relPath(ctx, in.ContextID, in.Path)
	if err != nil {
		return errorResult(err), nil, nil
	}
	rc, err := t.api.DownloadFile(ctx, in.ContextID, p)
	if err != nil {
		return errorResult(err), nil, nil
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxDownload+1))
	if err != nil {
		return errorResult(fmt.Errorf("download file: %w", err)), nil, nil
	}
	if len(b) > maxDownload {
		return errorResult(&client.Error{Code: client.CodeRequestTooLarge, Message: fmt.Sprintf(
			"%s is larger than %d bytes, too large for an MCP answer; use run_code or run_command to work on it in place", in.Path, maxDownload)}), nil, nil
	}
	return fileResult(in.ContextID, in.Path, b), nil, nil
}

type runCommandInput struct {
	ContextID string            `json:"context_id" jsonschema:"id of the context, as create_context returned it"`
	Command   string            `json:"command" jsonschema:"command line to run with bash"`
	Timeout   float64           `json:"timeout,omitempty" jsonschema:"seconds the command may run before it is killed (default: the daemon's)"`
	Cwd       string            `json:"cwd,omitempty" jsonschema:"directory to run in, relative to the context's working directory or absolute inside it (default the working directory)"`
	Env       map[string]string `json:"env,omitempty" jsonschema:"environment variables for this command only"`
}

func (t tools) runCommand(ctx context.Context, _ *sdk.CallToolRequest, in runCommandInput) (*sdk.CallToolResult, any, error) {
	r, err := t.api.RunCommand(ctx, in.ContextID, client.CommandRequest{
		Command: in.Command, Timeout: seconds(in.Timeout), Cwd: in.Cwd, Env: in.Env,
	})
	if err != nil {
		return errorResult(err), nil, nil
	}
	return commandResult(r), nil, nil
}

// relPath makes an absolute path p relative to the context's working dir,
// as the file API takes it: models know the working dir from their code's
// output and tend to name files by absolute paths in it. A path outside it
// stays as it is, for the API to refuse.
func (t tools) relPath(ctx context.Context, id, p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return p, nil
	}
	c, err := t.api.GetContext(ctx, id)
	if err != nil {
		return "", err
	}
	clean, wd := path.Clean(p), path.Clean(c.WorkingDir)
	if clean == wd {
		return ".", nil
	}
	if rel, ok := strings.CutPrefix(clean, strings.TrimSuffix(wd, "/")+"/"); ok {
		return rel, nil
	}
	return p, nil
}

// seconds converts a timeout in seconds, as tools take it, to a Duration.
func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second))
}

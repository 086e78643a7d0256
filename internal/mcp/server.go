// Package mcp serves sandboxd's contexts to MCP clients: tools to create
// contexts, run code and shell commands in them, move files in and out, and
// delete them.
//
// The tools call the sandboxd HTTP API through an API, which *client.Client
// satisfies, rather than the contexts.Manager directly. The same tools then
// serve both MCP transports: inside the daemon (/mcp, over a client of the
// daemon's own listener) and in `sandboxd mcp` (stdio, over a client of a
// daemon elsewhere). Going through the API also gives every tool call the
// API's validation, limits, queueing, metrics and error codes for free, at
// the cost of one loopback HTTP request, which is small next to running code.
package mcp

import (
	"context"
	"io"

	"github.com/google/jsonschema-go/jsonschema"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandboxd/sandboxd/client"
)

// API is the part of the sandboxd HTTP API the tools call. Its errors are
// *client.Error values, whose codes reach the MCP client.
type API interface {
	CreateContext(ctx context.Context, req client.CreateRequest) (*client.Context, error)
	GetContext(ctx context.Context, id string) (*client.Context, error)
	ListContexts(ctx context.Context) ([]client.Context, error)
	DeleteContext(ctx context.Context, id string) error
	Execute(ctx context.Context, id string, req client.ExecuteRequest) (*client.ExecuteResponse, error)
	UploadFile(ctx context.Context, id, path string, body io.Reader) (*client.FileInfo, error)
	DownloadFile(ctx context.Context, id, path string) (io.ReadCloser, error)
	RunCommand(ctx context.Context, id string, req client.CommandRequest) (*client.CommandResponse, error)
}

var _ API = (*client.Client)(nil)

// instructions tell the model on the other side how the tools fit together.
const instructions = `sandboxd runs code in contexts: each context is an isolated container with a Jupyter kernel (python by default; also r and bash). ` +
	`Create a context with create_context, then call run_code with its context_id as often as you like: variables, imports and files persist between calls. ` +
	`run_command runs shell commands in the same container; upload_file and download_file move files in and out. ` +
	`By default contexts have no network access. Call stop_context when you are done with a context.`

// NewServer returns an MCP server whose tools act through api. version is
// the server version it reports.
func NewServer(api API, version string) *sdk.Server {
	s := sdk.NewServer(&sdk.Implementation{Name: "sandboxd", Title: "sandboxd code interpreter", Version: version},
		&sdk.ServerOptions{Instructions: instructions, Capabilities: &sdk.ServerCapabilities{}})
	t := tools{api: api}
	sdk.AddTool(s, &sdk.Tool{
		Name:        "create_context",
		Description: "Create a context: a fresh container with a kernel for one language, where run_code keeps its state between calls. Returns its context_id.",
		InputSchema: schemaFor[createContextInput](nil),
		Annotations: &sdk.ToolAnnotations{Title: "Create context", DestructiveHint: ptr(false), OpenWorldHint: ptr(false)},
	}, t.createContext)
	sdk.AddTool(s, &sdk.Tool{
		Name: "run_code",
		Description: "Run code in a context and wait for it to finish. Returns JSON with stdout, stderr, success, execution_time, " +
			"the text of expression results, and error (name, value, traceback) when the code raised or timed out; " +
			"images the code displays (such as matplotlib figures after plt.show()) come back as image content.",
		InputSchema: schemaFor[runCodeInput](minimumZero("timeout")),
		Annotations: &sdk.ToolAnnotations{Title: "Run code", OpenWorldHint: ptr(false)},
	}, t.runCode)
	sdk.AddTool(s, &sdk.Tool{
		Name:        "list_contexts",
		Description: "List the contexts that exist, with their status and execution counts.",
		InputSchema: schemaFor[listContextsInput](nil),
		Annotations: &sdk.ToolAnnotations{Title: "List contexts", ReadOnlyHint: true, OpenWorldHint: ptr(false)},
	}, t.listContexts)
	sdk.AddTool(s, &sdk.Tool{
		Name:        "stop_context",
		Description: "Stop and delete a context: its container, kernel, variables and files are gone.",
		InputSchema: schemaFor[contextIDInput](nil),
		Annotations: &sdk.ToolAnnotations{Title: "Stop context", DestructiveHint: ptr(true), IdempotentHint: true, OpenWorldHint: ptr(false)},
	}, t.stopContext)
	sdk.AddTool(s, &sdk.Tool{
		Name:        "upload_file",
		Description: "Write a file in a context's working directory, creating or replacing it; code run there finds it by that path. content is text, or base64 when encoding is base64 (for binary files).",
		InputSchema: schemaFor[uploadFileInput](enum("encoding", encodingText, encodingBase64)),
		Annotations: &sdk.ToolAnnotations{Title: "Upload file", DestructiveHint: ptr(true), IdempotentHint: true, OpenWorldHint: ptr(false)},
	}, t.uploadFile)
	sdk.AddTool(s, &sdk.Tool{
		Name: "download_file",
		Description: "Read a file from a context. A text file comes back as text; an image as image content; " +
			"any other binary file as an embedded resource holding its bytes in base64.",
		InputSchema: schemaFor[downloadFileInput](nil),
		Annotations: &sdk.ToolAnnotations{Title: "Download file", ReadOnlyHint: true, OpenWorldHint: ptr(false)},
	}, t.downloadFile)
	sdk.AddTool(s, &sdk.Tool{
		Name:        "run_command",
		Description: "Run a command line with bash in a context's container, beside its kernel (it does not wait for running code, nor share its variables), and wait for it. Returns JSON with stdout, stderr and exit_code.",
		InputSchema: schemaFor[runCommandInput](minimumZero("timeout")),
		Annotations: &sdk.ToolAnnotations{Title: "Run command", OpenWorldHint: ptr(false)},
	}, t.runCommand)
	return s
}

func ptr[T any](v T) *T { return &v }

// schemaFor infers the input schema of T and lets adjust refine it. Unlike
// the inferred default, it accepts unknown properties, as the HTTP API
// does: a client written for another code interpreter may send its own.
func schemaFor[T any](adjust func(*jsonschema.Schema)) *jsonschema.Schema {
	s, err := jsonschema.For[T](nil)
	if err != nil {
		panic(err) // the input types are ours; their schemas are fixed
	}
	s.AdditionalProperties = nil
	if adjust != nil {
		adjust(s)
	}
	return s
}

// minimumZero makes the number property prop non-negative.
func minimumZero(prop string) func(*jsonschema.Schema) {
	return func(s *jsonschema.Schema) { s.Properties[prop].Minimum = ptr(0.0) }
}

// enum restricts the string property prop to values.
func enum(prop string, values ...any) func(*jsonschema.Schema) {
	return func(s *jsonschema.Schema) { s.Properties[prop].Enum = values }
}

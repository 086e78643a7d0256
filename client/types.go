// Package client is a small typed client for the sandboxd HTTP API.
//
// Every method takes a context first; cancelling it aborts the request, and
// for an execution the server then interrupts the running code. Error
// responses come back as *Error, whose Code says what went wrong:
//
//	_, err := c.Execute(ctx, id, client.ExecuteRequest{Code: "1+1"})
//	if client.IsCode(err, client.CodeContextNotFound) {
//		// the context was deleted
//	}
package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Error codes the server answers with, in the code field of an error body.
const (
	CodeInvalidRequest      = "INVALID_REQUEST"
	CodeUnsupportedLanguage = "UNSUPPORTED_LANGUAGE"
	CodeContextNotFound     = "CONTEXT_NOT_FOUND"
	CodeContextBusy         = "CONTEXT_BUSY"
	CodeTooManyContexts     = "TOO_MANY_CONTEXTS"
	CodeRequestTooLarge     = "REQUEST_TOO_LARGE"
	CodeNotFound            = "NOT_FOUND" // no such route: e.g. an older server
	CodeMethodNotAllowed    = "METHOD_NOT_ALLOWED"
	CodeDockerUnavailable   = "DOCKER_UNAVAILABLE"
	CodeKernelUnavailable   = "KERNEL_UNAVAILABLE"
	CodeUnauthorized        = "UNAUTHORIZED"
	CodeForbiddenHost       = "FORBIDDEN_HOST"
	CodeInvalidPath         = "INVALID_PATH"   // a file path that escapes the context or is malformed
	CodeFileNotFound        = "FILE_NOT_FOUND" // no file or directory at that path in the context
	CodeInternal            = "INTERNAL"
)

// Pool header values: whether a created context came from the warm pool.
const (
	PoolHit  = "hit"
	PoolMiss = "miss"
)

// Error is an error answered by the server.
type Error struct {
	// Status is the HTTP status, or 0 for a failure event of a stream,
	// which arrives after the 200 status was sent.
	Status int
	// Code is one of the Code constants; empty when the body was not an
	// error body of sandboxd (a proxy's page, say).
	Code    string
	Message string
}

func (e *Error) Error() string {
	switch {
	case e.Code == "":
		return fmt.Sprintf("sandboxd: HTTP %d: %s", e.Status, e.Message)
	case e.Status == 0:
		return fmt.Sprintf("sandboxd: %s: %s", e.Code, e.Message)
	}
	return fmt.Sprintf("sandboxd: HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

// Is makes errors.Is(err, &Error{Code: c}) match any *Error with code c, so
// callers can keep sentinels of their own.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code != "" && t.Code == e.Code
}

// IsCode reports whether err is, or wraps, an *Error with code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// Language is a language a context can be created for.
type Language struct {
	Name      string `json:"name"`
	Image     string `json:"image"`
	Installed bool   `json:"installed"` // whether the image is in the Docker engine
}

// PoolStatus is the warm pool of one language.
type PoolStatus struct {
	Language string `json:"language"`
	Size     int    `json:"size"`  // contexts the pool keeps ready
	Ready    int    `json:"ready"` // contexts ready now
}

// CreateRequest creates a context. Every field is optional; the server
// fills in its defaults.
type CreateRequest struct {
	Type        string            `json:"type,omitempty"`
	Language    string            `json:"language,omitempty"`
	SessionName string            `json:"session_name,omitempty"`
	WorkingDir  string            `json:"working_dir,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
	// Network asks for HTTP and HTTPS to the public internet, which the
	// server must allow (--allow-egress).
	Network bool `json:"network,omitempty"`
}

// Context is a context: a container with a kernel.
type Context struct {
	ID             string    `json:"context_id"`
	Type           string    `json:"type"`
	Language       string    `json:"language"`
	SessionName    string    `json:"session_name"`
	WorkingDir     string    `json:"working_dir"`
	Status         string    `json:"status"` // starting, active, busy, restarting or dead
	CreatedAt      time.Time `json:"created_at"`
	LastActivity   time.Time `json:"last_activity"`
	ExecutionCount int       `json:"execution_count"`
	Restarts       int       `json:"restarts"`
	Network        bool      `json:"network"` // whether it can reach the public internet

	// Pool is PoolHit or PoolMiss when the server said whether CreateContext
	// took the context from its warm pool, and empty otherwise.
	Pool string `json:"-"`
}

// ExecuteRequest is code to run in a context.
type ExecuteRequest struct {
	Code string
	// Timeout bounds the run, counted from when it starts; 0 leaves it to
	// the server's default. It travels as seconds.
	Timeout time.Duration
	// Env holds environment variables for this execution only.
	Env map[string]string
}

// MarshalJSON writes the request as the server reads it.
func (r ExecuteRequest) MarshalJSON() ([]byte, error) {
	type wire struct {
		Code    string            `json:"code"`
		Timeout float64           `json:"timeout,omitempty"`
		Env     map[string]string `json:"env,omitempty"`
	}
	return json.Marshal(wire{Code: r.Code, Timeout: r.Timeout.Seconds(), Env: r.Env})
}

// ExecuteResponse is the outcome of an execution. Code that raised or timed
// out is not an error of the call: Success is false and Error says why.
type ExecuteResponse struct {
	Output         Output          `json:"output"`
	Success        bool            `json:"success"`
	ExecutionTime  float64         `json:"execution_time"`  // seconds
	ExecutionCount *int            `json:"execution_count"` // nil or 0 when the kernel never counted it
	Results        []Result        `json:"results"`
	Error          *ExecutionError `json:"error,omitempty"`
	Truncated      bool            `json:"truncated,omitempty"` // output hit the server's cap: what followed was dropped
	Restarted      bool            `json:"restarted,omitempty"` // the kernel restarted: its state is lost
}

// Output is what an execution printed.
type Output struct {
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
}

// Result is a rich result: an execute_result or a display_data.
type Result struct {
	Type string `json:"type"`
	// Data maps a MIME type to its value: a JSON string for text types
	// (image/png is base64), any JSON for application/json and the like.
	Data     map[string]json.RawMessage `json:"data"`
	Metadata json.RawMessage            `json:"metadata,omitempty"`
}

// Text returns the value of a text MIME type such as text/plain, and
// whether the result has it as a string.
func (r Result) Text(mime string) (string, bool) {
	var s string
	if raw, ok := r.Data[mime]; !ok || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// ExecutionError is the exception that ended an execution, or TimeoutError,
// KernelDied, ContainerDied or ContextDeleted, which the server reports
// itself.
type ExecutionError struct {
	Name      string `json:"name"`
	Value     string `json:"value"`
	Traceback string `json:"traceback"`
}

// Event types of a streamed execution.
const (
	EventStdout  = "stdout"
	EventStderr  = "stderr"
	EventResult  = "result"
	EventError   = "error"
	EventEnd     = "end"
	EventFailure = "failure"
)

// Event is one event of a streamed execution. Type says which field is set.
type Event struct {
	Type    string
	Text    string           // stdout, stderr
	Result  *Result          // result
	Error   *ExecutionError  // error: the code raised
	End     *ExecuteResponse // end: the whole outcome, as Execute returns it
	Failure *Error           // failure: the execution could not run
}

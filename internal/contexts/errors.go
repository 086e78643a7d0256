package contexts

import (
	"errors"
	"fmt"
)

// Error codes. They are part of the HTTP API: clients match on them.
const (
	CodeInvalid             = "INVALID_REQUEST"
	CodeUnsupportedLanguage = "UNSUPPORTED_LANGUAGE"
	CodeNotFound            = "CONTEXT_NOT_FOUND"
	CodeTooManyContexts     = "TOO_MANY_CONTEXTS"
	CodeContextDead         = "CONTEXT_DEAD"
	// CodeRuntimeUnavailable says the runtime (the Docker engine) cannot
	// be reached.
	CodeRuntimeUnavailable = "DOCKER_UNAVAILABLE"
	CodeKernelUnavailable  = "KERNEL_UNAVAILABLE"
	CodeInternal           = "INTERNAL"
	// CodeInvalidPath refuses a file path or command cwd that is absolute,
	// has a .. segment, resolves outside the working dir, or is of the
	// wrong kind (a directory, FIFO, socket or device to download, a file
	// to list).
	CodeInvalidPath  = "INVALID_PATH"
	CodeFileNotFound = "FILE_NOT_FOUND"
	// CodeNoSpace refuses an upload that does not fit: the context's
	// workspace is full, or the file is over the file size limit.
	CodeNoSpace = "NO_SPACE"
	// CodeEgressDisabled refuses a context with networking on a daemon
	// that does not allow it.
	CodeEgressDisabled = "EGRESS_DISABLED"
	// CodeContextRecovering answers what needs the kernel of a context the
	// daemon is still taking over after its restart; retrying soon works.
	CodeContextRecovering = "CONTEXT_RECOVERING"
	// CodeSandboxNotFound answers for a sandbox id that names none.
	CodeSandboxNotFound = "SANDBOX_NOT_FOUND"
	// CodeSandboxStopped refuses what needs the container of a sandbox
	// that was stopped, or whose container stopped by itself.
	CodeSandboxStopped = "SANDBOX_STOPPED"
	// CodeTemplateNotFound refuses a sandbox of a template the daemon
	// does not have.
	CodeTemplateNotFound = "TEMPLATE_NOT_FOUND"
	// CodeProcessNotFound says a context's container has no process of
	// the pid asked for.
	CodeProcessNotFound = "PROCESS_NOT_FOUND"
	// CodeProcessProtected refuses to kill init, the Jupyter server, a
	// kernel or one of the daemon's own processes.
	CodeProcessProtected = "PROCESS_PROTECTED"
)

// ErrEgressDisabled refuses networking on a daemon that does not allow it.
var ErrEgressDisabled = &Error{Code: CodeEgressDisabled, Message: "this daemon gives contexts no network; start it with --allow-egress"}

// ErrRecovering refuses, for a moment, what needs the kernel of a context
// that is being taken over after a restart of the daemon.
var ErrRecovering = &Error{Code: CodeContextRecovering, Message: "the context is being taken over after a restart of the daemon; retry in a moment"}

// Error is an error with a stable code and a message fit to show a client.
type Error struct {
	Code    string
	Message string
	Err     error // the underlying cause, for logs; may be nil
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Code returns the code of err: "" for nil, CodeInternal for anything that
// is not an *Error.
func Code(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

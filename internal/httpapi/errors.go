package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// Codes of errors that only the HTTP layer makes.
const (
	codeTooLarge         = "REQUEST_TOO_LARGE"
	codeNotFound         = "NOT_FOUND"
	codeMethodNotAllowed = "METHOD_NOT_ALLOWED"
)

var statusByCode = map[string]int{
	contexts.CodeInvalid:             http.StatusBadRequest,
	contexts.CodeUnsupportedLanguage: http.StatusBadRequest,
	contexts.CodeNotFound:            http.StatusNotFound,
	contexts.CodeTooManyContexts:     http.StatusTooManyRequests,
	contexts.CodeContextDead:         http.StatusGone,
	contexts.CodeContextRecovering:   http.StatusServiceUnavailable,
	contexts.CodeRuntimeUnavailable:  http.StatusServiceUnavailable,
	contexts.CodeKernelUnavailable:   http.StatusServiceUnavailable,
	contexts.CodeInvalidPath:         http.StatusBadRequest,
	contexts.CodeFileNotFound:        http.StatusNotFound,
	contexts.CodeEgressDisabled:      http.StatusForbidden,
	contexts.CodeNoSpace:             http.StatusInsufficientStorage,
	contexts.CodeSandboxNotFound:     http.StatusNotFound,
	contexts.CodeSandboxStopped:      http.StatusConflict,
	contexts.CodeTemplateNotFound:    http.StatusNotFound,
	contexts.CodeProcessNotFound:     http.StatusNotFound,
	contexts.CodeProcessProtected:    http.StatusForbidden,
	codeTooLarge:                     http.StatusRequestEntityTooLarge,
	codeNotFound:                     http.StatusNotFound,
	codeMethodNotAllowed:             http.StatusMethodNotAllowed,
	codeUnauthorized:                 http.StatusUnauthorized,
	codeForbidden:                    http.StatusForbidden,
	codeForbiddenOrigin:              http.StatusForbidden,
	contexts.CodeInternal:            http.StatusInternalServerError,
}

type errorResponse struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// writeError answers with err as JSON. Errors without a code of ours are
// logged in full and shown only as "internal error".
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away: nobody to answer.
		return
	}
	body := errorBody(r, log, err)
	if body.Code == contexts.CodeContextRecovering {
		w.Header().Set("Retry-After", "2") // seconds; taking a context over takes about that
	}
	encode(w, statusByCode[body.Code], body)
}

// errorBody is what a client is told of err; what it is not told, the log is.
func errorBody(r *http.Request, log *slog.Logger, err error) errorResponse {
	var e *contexts.Error
	if !errors.As(err, &e) || statusByCode[e.Code] == 0 {
		log.Error("internal error", "method", r.Method, "path", r.URL.Path, "error", err)
		return errorResponse{Error: "internal error", Code: contexts.CodeInternal}
	}
	if statusByCode[e.Code] >= 500 && e.Code != contexts.CodeContextRecovering { // that one is expected, and passes
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "code", e.Code, "error", err)
	}
	return errorResponse{Error: e.Message, Code: e.Code}
}

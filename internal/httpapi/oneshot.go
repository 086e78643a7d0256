package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/oneshot"
)

// oneShotService runs code once, in a fresh process, for the routes of
// RAGFlow's executor manager and of Dify's sandbox.
type oneShotService interface {
	Run(ctx context.Context, req oneshot.Request) (oneshot.Result, error)
}

// ragflowPrefixes are where RAGFlow's routes are served: its endpoint
// setting is a base URL, to which the provider adds /run and /healthz.
var ragflowPrefixes = []string{"", "/ragflow"}

// addOneShotRoutes adds the routes of RAGFlow's executor manager (its
// self_managed provider) and of dify-sandbox.
func addOneShotRoutes(r chi.Router, log *slog.Logger, svc oneShotService, timeout time.Duration) {
	for _, prefix := range ragflowPrefixes {
		r.Get(prefix+"/healthz", func(w http.ResponseWriter, r *http.Request) {
			encode(w, http.StatusOK, map[string]string{"status": "ok"})
		})
		r.Post(prefix+"/run", handleRAGFlowRun(log, svc, timeout))
	}
	// Reading the metadata of every package takes seconds on a busy host.
	deps := &difyDependencies{svc: svc, timeout: max(timeout, time.Minute)}
	r.Route(difyPrefix, func(r chi.Router) {
		r.Post("/run", handleDifyRun(log, svc, timeout))
		r.Get("/dependencies", deps.handle(false))
		r.Get("/dependencies/refresh", deps.handle(true))
		r.Post("/dependencies/update", func(w http.ResponseWriter, r *http.Request) {
			// The images hold what there is: nothing to install.
			encode(w, http.StatusOK, difySuccess(struct{}{}))
		})
	})
}

// RAGFlow's executor manager: models/schemas.py and models/enums.py.
const (
	ragflowSuccess           = "success"
	ragflowProgramError      = "program_error"
	ragflowResourceLimit     = "resource_limit_exceeded"
	ragflowUnauthorized      = "unauthorized_access"
	ragflowRunnerError       = "program_runner_error"
	ragflowLimitTime         = "time"
	ragflowLimitMemory       = "memory"
	ragflowFileAccess        = "file_access"
	ragflowDisallowedSyscall = "disallowed_syscall"
	ragflowNonzeroExit       = "nonzero_exit"
)

type ragflowRunRequest struct {
	CodeB64   string         `json:"code_b64"`
	Language  string         `json:"language"`
	Arguments map[string]any `json:"arguments"`
}

type ragflowArtifact struct {
	Name       string `json:"name"`
	MIMEType   string `json:"mime_type"`
	Size       int    `json:"size"`
	ContentB64 string `json:"content_b64"`
}

type ragflowRunResponse struct {
	Status                 string            `json:"status"`
	Stdout                 string            `json:"stdout"`
	Stderr                 string            `json:"stderr"`
	ExitCode               int               `json:"exit_code"`
	Detail                 *string           `json:"detail"`
	TimeUsedMS             *float64          `json:"time_used_ms"`
	MemoryUsedKB           *float64          `json:"memory_used_kb"`
	ResourceLimitType      *string           `json:"resource_limit_type"`
	UnauthorizedAccessType *string           `json:"unauthorized_access_type"`
	RuntimeErrorType       *string           `json:"runtime_error_type"`
	Artifacts              []ragflowArtifact `json:"artifacts"`
	Result                 *oneshot.Value    `json:"result"`
}

// ragflowLanguages maps the executor manager's language names to ours.
var ragflowLanguages = map[string]string{"": "python", "python": "python", "nodejs": "javascript"}

// ragflowInvalid answers a request the executor manager (FastAPI) would
// refuse with 422.
func ragflowInvalid(w http.ResponseWriter, field, msg string) {
	encode(w, http.StatusUnprocessableEntity, map[string]any{"detail": []map[string]any{{"loc": []string{"body", field}, "msg": msg, "type": "value_error"}}})
}

func handleRAGFlowRun(log *slog.Logger, svc oneShotService, timeout time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req ragflowRunRequest
		if err := decode(r, &req); err != nil {
			writeError(w, r, log, err)
			return
		}
		code, err := base64.StdEncoding.DecodeString(req.CodeB64)
		if req.CodeB64 == "" || err != nil {
			ragflowInvalid(w, "code_b64", "Invalid base64 encoding")
			return
		}
		lang, ok := ragflowLanguages[req.Language]
		if !ok {
			ragflowInvalid(w, "language", "Input should be 'python' or 'nodejs'")
			return
		}
		res, err := svc.Run(r.Context(), oneshot.Request{Language: lang, Code: string(code), Main: true, Arguments: req.Arguments, Timeout: timeout})
		if err != nil {
			log.Warn("one-shot run failed", "error", err)
		}
		encode(w, http.StatusOK, ragflowResponse(res, err))
	}
}

// ragflowResponse says how a run ended as the executor manager does
// (services/execution.py), with the output kept where it drops it.
func ragflowResponse(res oneshot.Result, err error) ragflowRunResponse {
	str := func(s string) *string { return &s }
	out := ragflowRunResponse{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: res.ExitCode, Artifacts: []ragflowArtifact{}}
	if err != nil {
		out.Status, out.ExitCode, out.Detail = ragflowRunnerError, -3, str("internal_error")
		if contexts.Code(err) == oneshot.CodeBusy {
			out.ExitCode, out.Detail = -10, str("no_available_container")
		}
		out.Stderr = publicMessage(err)
		return out
	}
	ms := float64(res.Elapsed) / float64(time.Millisecond)
	out.TimeUsedMS = &ms
	if res.MaxRSSKB > 0 {
		kb := float64(res.MaxRSSKB)
		out.MemoryUsedKB = &kb
	}
	switch {
	case res.TimedOut:
		out.Status, out.ExitCode, out.ResourceLimitType = ragflowResourceLimit, -124, str(ragflowLimitTime)
		out.Stderr = joinLines(res.Stderr, "Execution timeout")
	case res.Killed:
		out.Status, out.ExitCode, out.ResourceLimitType = ragflowResourceLimit, -137, str(ragflowLimitMemory)
		out.Stderr = joinLines(res.Stderr, "Memory limit exceeded (killed by OOM)")
	case res.ExitCode == 0:
		out.Status, out.Result = ragflowSuccess, res.Value
		for _, a := range res.Artifacts {
			out.Artifacts = append(out.Artifacts, ragflowArtifact{Name: a.Name, MIMEType: a.MIMEType, Size: a.Size, ContentB64: base64.StdEncoding.EncodeToString(a.Content)})
		}
	case strings.Contains(res.Stderr, "Permission denied"):
		out.Status, out.UnauthorizedAccessType = ragflowUnauthorized, str(ragflowFileAccess)
	case strings.Contains(res.Stderr, "Operation not permitted"):
		out.Status, out.UnauthorizedAccessType = ragflowUnauthorized, str(ragflowDisallowedSyscall)
	case strings.Contains(res.Stderr, "MemoryError"):
		out.Status, out.ResourceLimitType = ragflowResourceLimit, str(ragflowLimitMemory)
	default:
		out.Status, out.RuntimeErrorType = ragflowProgramError, str(ragflowNonzeroExit)
	}
	var notes []string
	if res.Truncated {
		notes = append(notes, "output truncated")
	}
	if len(res.Skipped) > 0 {
		notes = append(notes, "artifacts not sent: "+strings.Join(res.Skipped, "; "))
	}
	if len(notes) > 0 {
		out.Detail = str(strings.Join(notes, "; "))
	}
	return out
}

func joinLines(a, b string) string {
	if a != "" && !strings.HasSuffix(a, "\n") {
		a += "\n"
	}
	return a + b
}

// dify-sandbox: internal/controller, internal/service, internal/types.
const difyPrefix = "/v1/sandbox"

// difyResponse is dify-sandbox's envelope: code 0 and "success", or a
// negative code and the error.
type difyResponse struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data"`
}

func difySuccess(data any) difyResponse { return difyResponse{Code: 0, Message: "success", Data: data} }

func difyError(code int, msg string) difyResponse { return difyResponse{Code: code, Message: msg} }

// difyLanguages maps dify-sandbox's language names to ours.
var difyLanguages = map[string]string{"python3": "python", "nodejs": "javascript"}

type difyRunRequest struct {
	Language      string `json:"language"`
	Code          string `json:"code"`
	Preload       string `json:"preload"`
	EnableNetwork bool   `json:"enable_network"`
}

func handleDifyRun(log *slog.Logger, svc oneShotService, timeout time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req difyRunRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			encode(w, http.StatusOK, difyError(-400, err.Error()))
			return
		}
		if req.Language == "" || req.Code == "" {
			encode(w, http.StatusOK, difyError(-400, "language and code are required"))
			return
		}
		lang, ok := difyLanguages[req.Language]
		if !ok {
			encode(w, http.StatusBadRequest, difyError(-400, "unsupported language"))
			return
		}
		// enable_network is not honoured: runners have no network (Dify
		// asks for it on every run).
		res, err := svc.Run(r.Context(), oneshot.Request{Language: lang, Code: req.Code, Preload: req.Preload, Timeout: timeout})
		switch {
		case contexts.Code(err) == oneshot.CodeBusy:
			encode(w, http.StatusServiceUnavailable, difyError(-503, "Too many requests"))
			return
		case err != nil:
			log.Warn("one-shot run failed", "error", err)
			encode(w, http.StatusOK, difyError(-500, publicMessage(err)))
			return
		}
		// As dify-sandbox does: stderr, then how the process ended.
		errText := res.Stderr
		switch {
		case res.TimedOut:
			errText = joinLines(errText, "error: timeout\n")
		case res.Killed:
			errText = joinLines(errText, "error: signal: killed\n")
		case res.ExitCode != 0:
			errText = joinLines(errText, "error: exit status "+strconv.Itoa(res.ExitCode)+"\n")
		}
		encode(w, http.StatusOK, difySuccess(map[string]string{"stdout": res.Stdout, "error": errText}))
	}
}

// difyDependencies lists the Python packages of the runners' image, as
// dify-sandbox lists those it installed. The list is read once, by a run.
type difyDependencies struct {
	svc     oneShotService
	timeout time.Duration
	mu      sync.Mutex
	list    []map[string]string
}

const listDependencies = `import importlib.metadata as m, json, site
site.main()
seen = {}
for d in m.distributions():
    name = d.metadata["Name"]
    if name and name.lower() not in seen:
        seen[name.lower()] = {"name": name, "version": d.version}
print(json.dumps(sorted(seen.values(), key=lambda d: d["name"].lower())))
`

func (d *difyDependencies) handle(refresh bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		lang := r.URL.Query().Get("language")
		switch {
		case lang == "":
			encode(w, http.StatusOK, difyError(-400, "language is required"))
			return
		case lang != "python3":
			encode(w, http.StatusBadRequest, difyError(-400, "unsupported language"))
			return
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.list == nil || refresh {
			res, err := d.svc.Run(r.Context(), oneshot.Request{Language: "python", Code: listDependencies, Timeout: d.timeout})
			var list []map[string]string
			if err == nil && res.ExitCode == 0 {
				err = json.Unmarshal([]byte(res.Stdout), &list)
			} else if err == nil {
				err = contexts.Errorf(contexts.CodeInternal, "listing the packages failed: %s", res.Stderr)
			}
			if err != nil {
				encode(w, http.StatusOK, difyError(-500, publicMessage(err)))
				return
			}
			d.list = list
		}
		encode(w, http.StatusOK, difySuccess(map[string]any{"dependencies": d.list}))
	}
}

// publicMessage is what a client of these routes is told of err: the
// message of an error of ours, nothing of any other.
func publicMessage(err error) string {
	var e *contexts.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

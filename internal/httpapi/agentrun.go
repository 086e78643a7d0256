package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// The routes of AgentRun's sandbox data API, which its SDKs call as
// <base>/sandboxes/{sandbox_id}/..., so that pointing such an SDK's base URL
// at sandboxd works. Contexts made here are kernels in the sandbox's
// container; a context id that is not the sandbox's is not found. Files and
// processes are the sandbox's, and a context's id stands for its
// container too.

// agentRunHome is the SDKs' default cwd. No context can work there, so it
// stands for the default working dir.
const agentRunHome = "/home/user"

type agentRunContext struct {
	ID       string `json:"id"`
	Language string `json:"language"`
	Cwd      string `json:"cwd"`
	Status   string `json:"status"`
}

func newAgentRunContext(c contexts.Info) agentRunContext {
	return agentRunContext{ID: c.ID, Language: c.Language, Cwd: c.WorkingDir, Status: string(c.Status)}
}

type agentRunCreateRequest struct {
	Language string `json:"language"`
	Cwd      string `json:"cwd"`
}

// validate leaves the language to Create, which refuses one it does not
// know before it makes anything.
func (req *agentRunCreateRequest) validate(bounds) error {
	return contexts.CheckWorkingDir(agentRunWorkingDir(req.Cwd))
}

// agentRunWorkingDir is the working dir a cwd asks for.
func agentRunWorkingDir(cwd string) string {
	if cwd == agentRunHome {
		return ""
	}
	return cwd
}

func handleAgentRunCreate(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req agentRunCreateRequest
		if err := decodeValid(r, &req, svc); err != nil {
			writeError(w, r, log, err)
			return
		}
		c, err := svc.Create(r.Context(), contexts.CreateRequest{SandboxID: chi.URLParam(r, "sandbox_id"), Language: req.Language, WorkingDir: agentRunWorkingDir(req.Cwd)})
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, newAgentRunContext(c))
	}
}

func handleAgentRunList(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		infos, err := svc.SandboxContexts(chi.URLParam(r, "sandbox_id"))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		all := make([]agentRunContext, len(infos))
		for i, c := range infos {
			all[i] = newAgentRunContext(c)
		}
		encode(w, http.StatusOK, all)
	}
}

func handleAgentRunGet(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := svc.SandboxContext(chi.URLParam(r, "sandbox_id"), chi.URLParam(r, "context_id"))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, newAgentRunContext(c))
	}
}

// handleAgentRunDelete shuts the context's kernel down; the sandbox and
// its other contexts go on.
func handleAgentRunDelete(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := svc.SandboxContext(chi.URLParam(r, "sandbox_id"), chi.URLParam(r, "context_id"))
		if err == nil {
			err = svc.Delete(r.Context(), c.ID)
		}
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, map[string]string{"status": "ok"})
	}
}

// agentRunResult is one item of an AgentRun execution's results.
type agentRunResult struct {
	Type  string                     `json:"type"` // stdout, stderr, result, error or endOfExecution
	Text  string                     `json:"text,omitempty"`
	Data  map[string]json.RawMessage `json:"data,omitempty"`
	Name  string                     `json:"name,omitempty"`
	Value string                     `json:"value,omitempty"`
	// Status, on endOfExecution: ok or error.
	Status        string  `json:"status,omitempty"`
	ExecutionTime float64 `json:"executionTime,omitempty"`
}

type agentRunExecuteRequest struct {
	Code      *string  `json:"code"`
	ContextID string   `json:"contextId"`
	Language  string   `json:"language"`
	Timeout   *float64 `json:"timeout"`
}

// validate checks all that Execute would refuse before a sandbox's
// default context is made for the request. The language is Create's to
// refuse, before it makes anything.
func (req *agentRunExecuteRequest) validate(b bounds) error {
	if req.Code == nil {
		return required("code")
	}
	return checkTimeout(req.Timeout, b)
}

// handleAgentRunExecute runs code in the sandbox's context that the path
// or the request names, else in the sandbox's default context of the
// request's language, and answers with the context's id and the results
// in order.
func handleAgentRunExecute(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req agentRunExecuteRequest
		if err := decodeValid(r, &req, svc); err != nil {
			writeError(w, r, log, err)
			return
		}
		sandboxID, id := chi.URLParam(r, "sandbox_id"), chi.URLParam(r, "context_id")
		if id == "" {
			id = req.ContextID
		}
		var c contexts.Info
		var err error
		if id != "" {
			c, err = svc.SandboxContext(sandboxID, id)
		} else {
			c, err = svc.DefaultContext(r.Context(), sandboxID, req.Language)
		}
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		e, err := svc.Execute(r.Context(), c.ID, contexts.ExecuteRequest{Code: *req.Code, Timeout: duration(req.Timeout)})
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, map[string]any{"contextId": c.ID, "results": agentRunResults(e)})
	}
}

func agentRunResults(e contexts.Execution) []agentRunResult {
	var results []agentRunResult
	if e.Stdout != "" {
		results = append(results, agentRunResult{Type: "stdout", Text: e.Stdout})
	}
	// The traceback is in the error item; stderr keeps what the code wrote.
	stderr := e.Stderr
	if e.Error != nil {
		stderr = strings.Replace(stderr, e.Error.Traceback+"\n", "", 1)
	}
	if stderr != "" {
		results = append(results, agentRunResult{Type: "stderr", Text: stderr})
	}
	for _, o := range e.Outputs {
		var text string
		json.Unmarshal(o.Data["text/plain"], &text) // not a string: no text
		results = append(results, agentRunResult{Type: "result", Text: text, Data: o.Data})
	}
	status := "ok"
	if e.Error != nil {
		status = "error"
		results = append(results, agentRunResult{Type: "error", Name: e.Error.Name, Value: e.Error.Value, Text: e.Error.Traceback})
	} else if !e.Success() {
		status = "error"
	}
	return append(results, agentRunResult{Type: "endOfExecution", Status: status, ExecutionTime: e.Duration.Seconds()})
}

// agentRunFileLimit caps the files the JSON file routes carry; larger
// ones go through /api/v1/contexts/{id}/files, which streams.
const agentRunFileLimit = 10 << 20

// agentRunContextOf returns where the files and processes routes act:
// the sandbox the id names (or the context, whose id stands for its
// container), as its id and the dir their paths are relative to.
func agentRunContextOf(r *http.Request, svc contextService) (contexts.Info, error) {
	id := chi.URLParam(r, "sandbox_id")
	workDir, err := svc.WorkingDir(id)
	if contexts.Code(err) == contexts.CodeNotFound {
		err = contexts.Errorf(contexts.CodeSandboxNotFound, "Sandbox not found")
	}
	return contexts.Info{ID: id, WorkingDir: workDir}, err
}

// agentRunPath makes an AgentRun path relative to the working dir: the
// SDKs' home, /home/user, stands for it, as for cwd.
func agentRunPath(p, workDir string) string {
	for _, root := range []string{agentRunHome, workDir} {
		if p == root {
			return "."
		}
		if rel, ok := strings.CutPrefix(p, root+"/"); ok {
			return rel
		}
	}
	return p
}

func handleAgentRunReadFile(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := agentRunContextOf(r, svc)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		p := r.URL.Query().Get("path")
		info, body, err := svc.OpenFile(r.Context(), c.ID, agentRunPath(p, c.WorkingDir))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		defer body.Close()
		if info.Size > agentRunFileLimit {
			writeError(w, r, log, contexts.Errorf(codeTooLarge, "%s has %d bytes, more than this route carries; GET /api/v1/contexts/%s/files/%s streams it", p, info.Size, c.ID, info.Path))
			return
		}
		b, err := io.ReadAll(body)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		resp := map[string]any{"path": p, "content": string(b), "encoding": "utf-8", "size": len(b)}
		if !utf8.Valid(b) {
			resp["content"], resp["encoding"] = base64.StdEncoding.EncodeToString(b), "base64"
		}
		encode(w, http.StatusOK, resp)
	}
}

func handleAgentRunWriteFile(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Path      string `json:"path"`
			Content   string `json:"content"`
			Encoding  string `json:"encoding"`
			Mode      string `json:"mode"`
			CreateDir *bool  `json:"createDir"`
		}
		if err := decode(r, &req); err != nil {
			writeError(w, r, log, err)
			return
		}
		if req.Mode != "" && !modePattern.MatchString(req.Mode) {
			writeError(w, r, log, contexts.Errorf(contexts.CodeInvalid, "mode %q is not an octal permission mode such as 644", req.Mode))
			return
		}
		content := []byte(req.Content)
		switch strings.ToLower(req.Encoding) {
		case "", "utf-8", "utf8":
		case "base64":
			var err error
			if content, err = base64.StdEncoding.DecodeString(req.Content); err != nil {
				writeError(w, r, log, contexts.Errorf(contexts.CodeInvalid, "field \"content\" is not base64: %v", err))
				return
			}
		default:
			writeError(w, r, log, contexts.Errorf(contexts.CodeInvalid, "encoding %q is neither utf-8 nor base64", req.Encoding))
			return
		}
		c, err := agentRunContextOf(r, svc)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		info, err := agentRunWrite(r.Context(), svc, c, req.Path, bytes.NewReader(content), req.Mode, req.CreateDir == nil || *req.CreateDir)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, map[string]any{"path": req.Path, "size": info.Size})
	}
}

type agentRunCmdRequest struct {
	Command *string  `json:"command"`
	Cwd     string   `json:"cwd"`
	Timeout *float64 `json:"timeout"`
}

// validate leaves the cwd to RunCommand, which knows the working dir.
func (req *agentRunCmdRequest) validate(b bounds) error {
	if err := checkCommand(req.Command); err != nil {
		return err
	}
	return checkTimeout(req.Timeout, b)
}

func handleAgentRunCmd(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req agentRunCmdRequest
		if err := decodeValid(r, &req, svc); err != nil {
			writeError(w, r, log, err)
			return
		}
		c, err := agentRunContextOf(r, svc)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		creq := contexts.CommandRequest{Command: *req.Command, Cwd: agentRunPath(req.Cwd, c.WorkingDir), Timeout: duration(req.Timeout)}
		res, err := svc.RunCommand(r.Context(), c.ID, creq)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, map[string]any{
			"stdout": res.Stdout, "stderr": res.Stderr, "exitCode": res.ExitCode,
			"executionTime": res.Duration.Seconds(), "timedOut": res.TimedOut,
		})
	}
}

package httpapi

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/kernel"
)

func handleHealth() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "OK")
	}
}

func handleReady(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := svc.Ping(r.Context()); err != nil {
			if contexts.Code(err) == contexts.CodeInternal {
				err = &contexts.Error{Code: contexts.CodeRuntimeUnavailable, Message: "the Docker engine cannot be reached", Err: err}
			}
			writeError(w, r, log, err)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "OK")
	}
}

type languageJSON struct {
	Name      string `json:"name"`
	Image     string `json:"image"`
	Installed bool   `json:"installed"`
}

type listLanguagesResponse struct {
	Languages []languageJSON `json:"languages"`
}

func handleListLanguages(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		langs, err := svc.Languages(r.Context())
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		resp := listLanguagesResponse{Languages: make([]languageJSON, len(langs))}
		for i, l := range langs {
			resp.Languages[i] = languageJSON{Name: l.Name, Image: l.Image, Installed: l.Installed}
		}
		encode(w, http.StatusOK, resp)
	}
}

type poolJSON struct {
	Language string `json:"language"`
	Size     int    `json:"size"`
	Ready    int    `json:"ready"`
}

type poolResponse struct {
	Pools []poolJSON `json:"pools"`
}

func handlePool(svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		pools := svc.Pools()
		resp := poolResponse{Pools: make([]poolJSON, len(pools))}
		for i, p := range pools {
			resp.Pools[i] = poolJSON{Language: p.Language, Size: p.Size, Ready: p.Ready}
		}
		encode(w, http.StatusOK, resp)
	}
}

type createContextRequest struct {
	Type        string            `json:"type"`
	Language    string            `json:"language"`
	SessionName string            `json:"session_name"`
	WorkingDir  string            `json:"working_dir"`
	Env         map[string]string `json:"env"`
	Network     bool              `json:"network"`
	SandboxID   string            `json:"sandbox_id"`
}

// validate leaves the type, language and network to Create, which knows
// what contexts it makes and whether the daemon allows egress.
func (req *createContextRequest) validate(bounds) error {
	if err := contexts.CheckWorkingDir(req.WorkingDir); err != nil {
		return err
	}
	return contexts.ValidateEnv(req.Env)
}

type contextResponse struct {
	ContextID      string `json:"context_id"`
	Type           string `json:"type"`
	Language       string `json:"language"`
	SessionName    string `json:"session_name"`
	WorkingDir     string `json:"working_dir"`
	Status         string `json:"status"`
	CreatedAt      string `json:"created_at"`
	LastActivity   string `json:"last_activity"`
	ExecutionCount int    `json:"execution_count"`
	Restarts       int    `json:"restarts"`
	Network        bool   `json:"network"`
	SandboxID      string `json:"sandbox_id,omitempty"`
}

func newContextResponse(c contexts.Info) contextResponse {
	return contextResponse{
		ContextID:      c.ID,
		Type:           c.Type,
		Language:       c.Language,
		SessionName:    c.SessionName,
		WorkingDir:     c.WorkingDir,
		Status:         string(c.Status),
		CreatedAt:      c.CreatedAt.UTC().Format(time.RFC3339),
		LastActivity:   c.LastActivity.UTC().Format(time.RFC3339),
		ExecutionCount: c.ExecutionCount,
		Restarts:       c.Restarts,
		Network:        c.Network,
		SandboxID:      c.SandboxID,
	}
}

func handleCreateContext(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req createContextRequest
		if err := decodeValid(r, &req, svc); err != nil {
			writeError(w, r, log, err)
			return
		}
		c, err := svc.Create(r.Context(), contexts.CreateRequest{
			Type:        req.Type,
			Language:    req.Language,
			SessionName: req.SessionName,
			WorkingDir:  req.WorkingDir,
			Env:         req.Env,
			Network:     req.Network,
			SandboxID:   req.SandboxID,
		})
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		// Whether the kernel came ready from the warm pool: for benchmarks
		// and for those tuning the pool's size.
		w.Header().Set("Sandboxd-Pool", "miss")
		if c.Pooled {
			w.Header().Set("Sandboxd-Pool", "hit")
		}
		encode(w, http.StatusCreated, newContextResponse(c))
	}
}

type listContextsResponse struct {
	Contexts []contextResponse `json:"contexts"`
}

func handleListContexts(log *slog.Logger, svc contextService, place Placement) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		infos := svc.List()
		resp := listContextsResponse{Contexts: make([]contextResponse, len(infos))}
		for i, c := range infos {
			resp.Contexts[i] = newContextResponse(c)
		}
		if others := peerLists(log, place, r); others != nil {
			resp.Contexts = mergeContexts(resp.Contexts, others)
		}
		encode(w, http.StatusOK, resp)
	}
}

func handleGetContext(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := svc.Get(chi.URLParam(r, "id"))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, newContextResponse(c))
	}
}

func handleDeleteContext(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := svc.Delete(r.Context(), chi.URLParam(r, "id")); err != nil {
			writeError(w, r, log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

type executeRequest struct {
	Code    *string           `json:"code"`
	Timeout *float64          `json:"timeout"` // seconds
	Env     map[string]string `json:"env"`
}

func (req *executeRequest) validate(b bounds) error {
	if req.Code == nil {
		return required("code")
	}
	if err := checkTimeout(req.Timeout, b); err != nil {
		return err
	}
	return contexts.ValidateEnv(req.Env)
}

type executeResponse struct {
	Output         outputJSON   `json:"output"`
	Success        bool         `json:"success"`
	ExecutionTime  float64      `json:"execution_time"` // seconds
	ExecutionCount *int         `json:"execution_count"`
	Results        []resultJSON `json:"results"`
	Error          *errorJSON   `json:"error,omitempty"`
	Truncated      bool         `json:"truncated,omitempty"`
	Restarted      bool         `json:"restarted,omitempty"`
}

type outputJSON struct {
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
}

type resultJSON struct {
	Type     string                     `json:"type"`
	Data     map[string]json.RawMessage `json:"data"`
	Metadata json.RawMessage            `json:"metadata,omitempty"`
}

type errorJSON struct {
	Name      string `json:"name"`
	Value     string `json:"value"`
	Traceback string `json:"traceback"`
}

func newExecuteResponse(e contexts.Execution) executeResponse {
	resp := executeResponse{
		Output:         outputJSON{Stdout: e.Stdout, Stderr: e.Stderr},
		Success:        e.Success(),
		ExecutionTime:  e.Duration.Seconds(),
		ExecutionCount: e.ExecutionCount,
		Results:        make([]resultJSON, len(e.Outputs)),
		Truncated:      e.Truncated,
		Restarted:      e.Restarted,
		Error:          newErrorJSON(e.Error),
	}
	for i, o := range e.Outputs {
		resp.Results[i] = newResultJSON(o)
	}
	return resp
}

func newResultJSON(o kernel.Output) resultJSON {
	return resultJSON{Type: o.Type, Data: o.Data, Metadata: o.Metadata}
}

func newErrorJSON(e *kernel.Error) *errorJSON {
	if e == nil {
		return nil
	}
	return &errorJSON{Name: e.Name, Value: e.Value, Traceback: e.Traceback}
}

func handleExecute(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req executeRequest
		if err := decodeValid(r, &req, svc); err != nil {
			writeError(w, r, log, err)
			return
		}
		id := chi.URLParam(r, "id")
		xreq := contexts.ExecuteRequest{Code: *req.Code, Timeout: duration(req.Timeout), Env: req.Env}
		if wantsEventStream(r) {
			streamExecute(w, r, log, svc, id, xreq)
			return
		}
		e, err := svc.Execute(r.Context(), id, xreq)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, newExecuteResponse(e))
	}
}

func handleInterrupt(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := svc.Interrupt(r.Context(), chi.URLParam(r, "id")); err != nil {
			writeError(w, r, log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func handleRestart(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := svc.Restart(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, newContextResponse(c))
	}
}

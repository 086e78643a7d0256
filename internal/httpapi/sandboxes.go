package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// The sandbox routes of AgentRun's API: a sandbox is one container, made
// from a template (a language's image), holding any number of contexts.
// AgentRun's SDKs read the answers of its control routes from an envelope,
// {"code": "SUCCESS", "requestId": ..., "data": ...}, and its sandboxes and
// templates in camelCase; errors are sandboxd's own.

// sandboxService lists the sandbox methods the handlers call.
type sandboxService interface {
	CreateSandbox(ctx context.Context, req contexts.SandboxRequest) (contexts.SandboxInfo, error)
	GetSandbox(id string) (contexts.SandboxInfo, error)
	ListSandboxes() []contexts.SandboxInfo
	StopSandbox(ctx context.Context, id string) (contexts.SandboxInfo, error)
	DeleteSandbox(ctx context.Context, id string) error
	SandboxContexts(id string) ([]contexts.Info, error)
	SandboxContext(id, contextID string) (contexts.Info, error)
	DefaultContext(ctx context.Context, id, language string) (contexts.Info, error)
	Templates(ctx context.Context) ([]contexts.LanguageStatus, error)
	Template(ctx context.Context, name string) (contexts.LanguageStatus, error)
	WorkingDir(id string) (string, error)
}

// envelope is how AgentRun's control answers wrap what they carry.
func envelope(data any) map[string]any {
	return map[string]any{"code": "SUCCESS", "requestId": uuid.NewString(), "data": data}
}

// agentRunSandbox is a sandbox as AgentRun's SDKs read it. Its status is
// READY, STOPPED (on request, or idle past its timeout), DEAD (its
// container stopped by itself) or RECOVERING (after a restart of the
// daemon, for a moment).
type agentRunSandbox struct {
	SandboxID                 string         `json:"sandboxId"`
	TemplateName              string         `json:"templateName"`
	TemplateID                string         `json:"templateId"`
	Status                    string         `json:"status"`
	CreatedAt                 string         `json:"createdAt"`
	LastUpdatedAt             string         `json:"lastUpdatedAt"`
	EndedAt                   string         `json:"endedAt,omitempty"`
	SandboxIdleTimeoutSeconds int            `json:"sandboxIdleTimeoutSeconds"`
	Metadata                  map[string]any `json:"metadata"`
}

func newAgentRunSandbox(s contexts.SandboxInfo) agentRunSandbox {
	a := agentRunSandbox{
		SandboxID:                 s.ID,
		TemplateName:              s.Template,
		TemplateID:                s.Template,
		Status:                    strings.ToUpper(string(s.Status)),
		CreatedAt:                 s.CreatedAt.UTC().Format(time.RFC3339),
		LastUpdatedAt:             s.LastActivity.UTC().Format(time.RFC3339),
		SandboxIdleTimeoutSeconds: int(s.IdleTimeout.Seconds()),
		Metadata:                  map[string]any{"contexts": s.Contexts},
	}
	if !s.EndedAt.IsZero() {
		a.EndedAt = s.EndedAt.UTC().Format(time.RFC3339)
	}
	return a
}

type createSandboxRequest struct {
	TemplateName              string   `json:"templateName"`
	SandboxIdleTimeoutSeconds *float64 `json:"sandboxIdleTimeoutSeconds"`
}

// validate leaves the template to CreateSandbox, which knows them.
func (req *createSandboxRequest) validate(bounds) error {
	if req.TemplateName == "" {
		return required("templateName")
	}
	if t := req.SandboxIdleTimeoutSeconds; t != nil && *t < 0 {
		return contexts.Errorf(contexts.CodeInvalid, "field \"sandboxIdleTimeoutSeconds\" must not be negative")
	}
	return nil
}

func handleCreateSandbox(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req createSandboxRequest
		if err := decodeValid(r, &req, svc); err != nil {
			writeError(w, r, log, err)
			return
		}
		s, err := svc.CreateSandbox(r.Context(), contexts.SandboxRequest{Template: req.TemplateName, IdleTimeout: duration(req.SandboxIdleTimeoutSeconds)})
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, envelope(newAgentRunSandbox(s)))
	}
}

func handleListSandboxes(log *slog.Logger, svc contextService, place Placement) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		all := svc.ListSandboxes()
		items := make([]agentRunSandbox, len(all))
		for i, s := range all {
			items[i] = newAgentRunSandbox(s)
		}
		if others := peerLists(log, place, r); others != nil {
			items = mergeSandboxes(items, others)
		}
		encode(w, http.StatusOK, envelope(map[string]any{"items": items, "nextToken": ""}))
	}
}

func handleGetSandbox(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := svc.GetSandbox(chi.URLParam(r, "sandbox_id"))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, envelope(newAgentRunSandbox(s)))
	}
}

func handleStopSandbox(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := svc.StopSandbox(r.Context(), chi.URLParam(r, "sandbox_id"))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, envelope(newAgentRunSandbox(s)))
	}
}

// handleDeleteSandbox answers with the sandbox as it was stopped.
func handleDeleteSandbox(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := chi.URLParam(r, "sandbox_id")
		s, err := svc.StopSandbox(r.Context(), id)
		if err == nil {
			err = svc.DeleteSandbox(r.Context(), id)
		}
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, envelope(newAgentRunSandbox(s)))
	}
}

// handleSandboxHealth answers {"status": "ok"}, which the SDKs wait for,
// once the sandbox can run code; its error otherwise.
func handleSandboxHealth(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := svc.GetSandbox(chi.URLParam(r, "sandbox_id"))
		if err == nil {
			switch s.Status {
			case contexts.SandboxReady:
			case contexts.SandboxRecovering:
				err = contexts.ErrRecovering
			default:
				err = contexts.Errorf(contexts.CodeSandboxStopped, "sandbox %s is %s", s.ID, s.Status)
			}
		}
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, map[string]string{"status": "ok"})
	}
}

// agentRunTemplate is a template as AgentRun's SDKs read it: READY when
// its image is installed, IMAGE_MISSING otherwise.
type agentRunTemplate struct {
	TemplateName string `json:"templateName"`
	TemplateID   string `json:"templateId"`
	TemplateType string `json:"templateType"`
	Status       string `json:"status"`
	Image        string `json:"image"`
	Description  string `json:"description"`
}

func newAgentRunTemplate(l contexts.LanguageStatus) agentRunTemplate {
	t := agentRunTemplate{
		TemplateName: l.Name, TemplateID: l.Name, TemplateType: "CodeInterpreter", Status: "READY", Image: l.Image,
		Description: "Contexts of the kernels of " + l.Image + "; also named " + l.Name + "-sandbox",
	}
	if !l.Installed {
		t.Status = "IMAGE_MISSING"
	}
	return t
}

func handleListTemplates(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		all, err := svc.Templates(r.Context())
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		items := make([]agentRunTemplate, len(all))
		for i, l := range all {
			items[i] = newAgentRunTemplate(l)
		}
		encode(w, http.StatusOK, envelope(map[string]any{"items": items, "pageNumber": 1, "pageSize": len(items), "total": len(items)}))
	}
}

func handleGetTemplate(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		l, err := svc.Template(r.Context(), chi.URLParam(r, "template_name"))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, envelope(newAgentRunTemplate(l)))
	}
}

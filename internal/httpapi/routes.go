// Package httpapi serves sandboxd's HTTP API: routes, request decoding,
// JSON responses and errors, access logs and metrics.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sandboxd/sandboxd/internal/console"
	"github.com/sandboxd/sandboxd/internal/contexts"
)

// contextService lists the methods the handlers call.
type contextService interface {
	Create(ctx context.Context, req contexts.CreateRequest) (contexts.Info, error)
	Get(id string) (contexts.Info, error)
	List() []contexts.Info
	Delete(ctx context.Context, id string) error
	Execute(ctx context.Context, id string, req contexts.ExecuteRequest) (contexts.Execution, error)
	Timeout(d time.Duration) (time.Duration, error)
	Interrupt(ctx context.Context, id string) error
	Restart(ctx context.Context, id string) (contexts.Info, error)
	Ping(ctx context.Context) error
	Languages(ctx context.Context) ([]contexts.LanguageStatus, error)
	Pools() []contexts.PoolStatus
	fileService
	agentRunService
	historyService
	sandboxService
}

// Config tunes the handler.
type Config struct {
	// MaxBodyBytes caps request bodies; larger ones get 413.
	MaxBodyBytes int64
	// MaxUploadBytes caps file uploads instead; 0 is DefaultMaxUpload.
	MaxUploadBytes int64
	// Registry serves /metrics and receives the HTTP metrics.
	Registry *prometheus.Registry
	// Auth, when enabled, is required of every request but /health.
	Auth Auth
	// AllowedHosts are Host header values accepted besides this machine's
	// own names when auth is off; "*" accepts any.
	AllowedHosts []string
	// MCP, when not nil, serves MCP's streamable HTTP transport at /mcp,
	// behind the same auth and Host checks as the rest of the API.
	MCP http.Handler
	// OneShot, when not nil, serves the routes of RAGFlow's executor
	// manager and of Dify's sandbox, whose runs take OneShotTimeout.
	OneShot        oneShotService
	OneShotTimeout time.Duration
	// Placement, when not nil, says which replica drives a context this
	// one does not hold: its requests are passed on to it, and lists
	// include the other replicas' contexts.
	Placement Placement
}

// NewHandler returns the whole HTTP API.
func NewHandler(log *slog.Logger, svc contextService, cfg Config) http.Handler {
	r := chi.NewRouter()
	r.Use(secureHeaders, recoverer(log), accessLog(log), trackMetrics(cfg.Registry), guard(log, cfg.Auth, cfg.AllowedHosts), crossOrigin(log), limitBody(log, cfg.MaxBodyBytes))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, log, contexts.Errorf(codeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, log, contexts.Errorf(codeMethodNotAllowed, "method %s is not allowed on %s", r.Method, r.URL.Path))
	})
	addRoutes(r, log, svc, cfg)
	return r
}

// addRoutes lists every route of the API.
func addRoutes(r chi.Router, log *slog.Logger, svc contextService, cfg Config) {
	r.Get("/health", handleHealth())
	toConsole := http.RedirectHandler(console.Prefix, http.StatusFound)
	r.Get("/", toConsole.ServeHTTP)
	r.Get("/ui", toConsole.ServeHTTP)
	r.Get(console.Prefix+"*", console.Handler().ServeHTTP)
	r.Get("/readyz", handleReady(log, svc))
	r.Handle("/metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{}))
	r.Get("/api/v1/languages", handleListLanguages(log, svc))
	r.Get("/api/v1/pool", handlePool(svc))
	r.Get("/api/v1/events", handleEvents(log, svc))
	r.Get("/templates", handleListTemplates(log, svc))
	r.Get("/templates/{template_name}", handleGetTemplate(log, svc))
	r.Post("/sandboxes", handleCreateSandbox(log, svc))
	r.Get("/sandboxes", handleListSandboxes(log, svc, cfg.Placement))
	toSandbox := forwardUnheld(log, cfg.Placement, "sandbox_id", func(id string) bool { _, err := svc.GetSandbox(id); return err == nil })
	r.Route("/sandboxes/{sandbox_id}", func(r chi.Router) {
		r.Use(toSandbox)
		r.Get("/", handleGetSandbox(log, svc))
		r.Delete("/", handleDeleteSandbox(log, svc))
		r.Post("/stop", handleStopSandbox(log, svc))
		r.Get("/health", handleSandboxHealth(log, svc))
		r.Post("/execute", handleAgentRunExecute(log, svc))
		r.Route("/contexts", func(r chi.Router) {
			r.Post("/", handleAgentRunCreate(log, svc))
			r.Get("/", handleAgentRunList(log, svc))
			r.Post("/execute", handleAgentRunExecute(log, svc))
			r.Get("/{context_id}", handleAgentRunGet(log, svc))
			r.Delete("/{context_id}", handleAgentRunDelete(log, svc))
			r.Post("/{context_id}/execute", handleAgentRunExecute(log, svc))
		})
		r.Get("/files", handleAgentRunReadFile(log, svc))
		r.Post("/files", handleAgentRunWriteFile(log, svc))
		r.Post("/processes/cmd", handleAgentRunCmd(log, svc))
	})
	r.With(toSandbox).Group(func(r chi.Router) { addAgentRunDataRoutes(r, log, svc, cfg) })
	if cfg.MCP != nil {
		// The methods of MCP's streamable HTTP transport; others get our 405.
		r.Post("/mcp", cfg.MCP.ServeHTTP)
		r.Get("/mcp", cfg.MCP.ServeHTTP)
		r.Delete("/mcp", cfg.MCP.ServeHTTP)
	}
	if cfg.OneShot != nil {
		addOneShotRoutes(r, log, cfg.OneShot, cfg.OneShotTimeout)
	}
	r.Route("/api/v1/contexts", func(r chi.Router) {
		r.Post("/", handleCreateContext(log, svc))
		r.Get("/", handleListContexts(log, svc, cfg.Placement))
		r.Route("/{id}", func(r chi.Router) {
			r.Use(forwardUnheld(log, cfg.Placement, "id", func(id string) bool { _, err := svc.Get(id); return err == nil }))
			r.Get("/", handleGetContext(log, svc))
			r.Delete("/", handleDeleteContext(log, svc))
			r.Post("/execute", handleExecute(log, svc))
			r.Post("/interrupt", handleInterrupt(log, svc))
			r.Post("/restart", handleRestart(log, svc))
			r.Get("/ws", handleRelay(log, svc, cfg.MaxBodyBytes))
			r.Get("/history", handleHistory(log, svc))
			addFileRoutes(r, log, svc, cfg)
		})
	})
}

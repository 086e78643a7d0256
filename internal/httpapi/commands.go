package httpapi

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/kernel"
)

type commandRequest struct {
	Command *string           `json:"command"`
	Timeout *float64          `json:"timeout"` // seconds
	Env     map[string]string `json:"env"`
	Cwd     string            `json:"cwd"`
}

// validate leaves the cwd to RunCommand, which knows the context's working
// dir.
func (req *commandRequest) validate(b bounds) error {
	if err := checkCommand(req.Command); err != nil {
		return err
	}
	if err := checkTimeout(req.Timeout, b); err != nil {
		return err
	}
	return contexts.ValidateEnv(req.Env)
}

type commandResponse struct {
	Stdout        string  `json:"stdout"`
	Stderr        string  `json:"stderr"`
	ExitCode      int     `json:"exit_code"`
	ExecutionTime float64 `json:"execution_time"` // seconds
	Truncated     bool    `json:"truncated,omitempty"`
	TimedOut      bool    `json:"timed_out,omitempty"`
}

func newCommandResponse(c contexts.CommandResult) commandResponse {
	return commandResponse{
		Stdout:        c.Stdout,
		Stderr:        c.Stderr,
		ExitCode:      c.ExitCode,
		ExecutionTime: c.Duration.Seconds(),
		Truncated:     c.Truncated,
		TimedOut:      c.TimedOut,
	}
}

func handleCommand(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req commandRequest
		if err := decodeValid(r, &req, svc); err != nil {
			writeError(w, r, log, err)
			return
		}
		id := chi.URLParam(r, "id")
		creq := contexts.CommandRequest{Command: *req.Command, Timeout: duration(req.Timeout), Env: req.Env, Cwd: req.Cwd}
		if wantsEventStream(r) {
			streamCommand(w, r, log, svc, id, creq)
			return
		}
		res, err := svc.RunCommand(r.Context(), id, creq)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, newCommandResponse(res))
	}
}

// streamCommand runs a command and streams its output as Server-Sent
// Events: stdout and stderr as they arrive, then end with the summary, or
// failure with an error body. The stream starts with the first output or
// after keepAlive of silence: a command refused at once (a bad cwd, an
// unknown context) gets a plain error response with its status.
func streamCommand(w http.ResponseWriter, r *http.Request, log *slog.Logger, svc contextService, id string, req contexts.CommandRequest) {
	sse := newSSEWriter(w)
	defer sse.done()
	res, err := streamOutput(r.Context(), func(ctx context.Context, push func(kernel.Event)) (contexts.CommandResult, error) {
		req.OnOutput = func(stream, text string) { push(kernel.Event{Type: stream, Text: text}) }
		return svc.RunCommand(ctx, id, req)
	}, func(ev kernel.Event) error { return sse.send(ev.Type, textEvent{Text: ev.Text}) }, sse.keepAlive)
	sse.finish(r, log, id, newCommandResponse(res), err)
}

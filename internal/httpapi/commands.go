package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"time"

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
		if err := decode(r, &req); err != nil {
			writeError(w, r, log, err)
			return
		}
		if req.Command == nil {
			writeError(w, r, log, contexts.Errorf(contexts.CodeInvalid, "field \"command\" is required"))
			return
		}
		timeout, err := parseTimeout(req.Timeout)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		id := chi.URLParam(r, "id")
		creq := contexts.CommandRequest{Command: *req.Command, Timeout: timeout, Env: req.Env, Cwd: req.Cwd}
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
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	q := newEventQueue(cancel)
	req.OnOutput = func(stream, text string) { q.push(kernel.Event{Type: stream, Text: text}) }
	type outcome struct {
		res contexts.CommandResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := svc.RunCommand(ctx, id, req)
		done <- outcome{res, err}
	}()

	sse := newSSEWriter(w)
	defer sse.done()
	started := false
	begin := func() {
		if started {
			return
		}
		started = true
		sse.start()
	}
	// failed is set when the client could not be written to or fell behind:
	// the command is stopped (ctx), and nothing more is written.
	var failed error
	fail := func(err error) {
		if err != nil && failed == nil {
			failed = err
			cancel()
			log.Warn("cut off a streaming client", "context_id", id, "error", err)
		}
	}
	send := func() {
		events, err := q.take()
		fail(err)
		for _, ev := range events {
			if failed == nil {
				begin()
				fail(sse.send(ev.Type, textEvent{Text: ev.Text}))
			}
		}
	}
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		select {
		case <-q.ready:
			send()
		case <-tick.C:
			if failed == nil {
				begin()
				fail(sse.keepAlive())
			}
		case o := <-done:
			send()
			switch {
			case failed != nil:
				return
			case o.err != nil && !started:
				writeError(w, r, log, o.err)
				return
			case o.err != nil && r.Context().Err() != nil:
				return // the client went away: nobody to tell
			}
			begin()
			if o.err != nil {
				sse.send("failure", errorBody(r, log, o.err))
				return
			}
			sse.send("end", newCommandResponse(o.res))
			return
		}
	}
}

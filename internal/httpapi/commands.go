package httpapi

import (
	"fmt"
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
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, r, log, fmt.Errorf("response writer cannot flush"))
		return
	}
	q := newEventQueue()
	req.OnOutput = func(stream, text string) { q.push(kernel.Event{Type: stream, Text: text}) }
	type outcome struct {
		res contexts.CommandResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := svc.RunCommand(r.Context(), id, req)
		done <- outcome{res, err}
	}()

	var sse *sseWriter
	begin := func() {
		if sse != nil {
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		sse = &sseWriter{w: w, f: flusher}
	}
	send := func(events []kernel.Event) {
		for _, ev := range events {
			begin()
			sse.send(ev.Type, textEvent{Text: ev.Text})
		}
	}
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		select {
		case <-q.ready:
			send(q.take())
		case <-tick.C:
			begin()
			fmt.Fprint(w, ": keep-alive\n\n")
			flusher.Flush()
		case o := <-done:
			send(q.take())
			if o.err != nil && sse == nil {
				writeError(w, r, log, o.err)
				return
			}
			if o.err != nil && r.Context().Err() != nil {
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

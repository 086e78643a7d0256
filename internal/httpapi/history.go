package httpapi

import (
	"log/slog"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// historyService lists the methods the history and events handlers call.
type historyService interface {
	History(id string, before int64, limit int) (contexts.HistoryPage, error)
	Subscribe() (<-chan contexts.Event, func())
}

// defaultHistoryPage is the page size of a history request without limit.
const defaultHistoryPage = 50

type entryJSON struct {
	ID        int64        `json:"id"`
	Kind      string       `json:"kind"`
	StartedAt string       `json:"started_at"`
	Duration  float64      `json:"duration"` // seconds
	Code      *string      `json:"code,omitempty"`
	Command   *string      `json:"command,omitempty"`
	Success   bool         `json:"success"`
	Output    outputJSON   `json:"output"`
	Results   []resultJSON `json:"results"`
	Error     *errorJSON   `json:"error"`
	ExitCode  *int         `json:"exit_code,omitempty"`
	Truncated bool         `json:"truncated"`
}

func newEntryJSON(e contexts.Entry) entryJSON {
	j := entryJSON{
		ID:        e.ID,
		Kind:      e.Kind,
		StartedAt: e.StartedAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		Duration:  e.Duration.Seconds(),
		Success:   e.Success,
		Output:    outputJSON{Stdout: e.Stdout, Stderr: e.Stderr},
		Results:   make([]resultJSON, len(e.Outputs)),
		Error:     newErrorJSON(e.Error),
		Truncated: e.Truncated,
	}
	if e.Kind == contexts.KindCommand {
		j.Command, j.ExitCode = &e.Command, &e.ExitCode
	} else {
		j.Code = &e.Code
	}
	for i, o := range e.Outputs {
		j.Results[i] = newResultJSON(o)
	}
	return j
}

type historyResponse struct {
	Entries    []entryJSON `json:"entries"`
	NextBefore *int64      `json:"next_before"`
	Dropped    int64       `json:"dropped"`
}

// queryInt reads the query parameter name as a positive integer; def when
// it is absent.
func queryInt(r *http.Request, name string, def int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, contexts.Errorf(contexts.CodeInvalid, "%s must be a positive integer, not %q", name, v)
	}
	return n, nil
}

func handleHistory(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		before, err := queryInt(r, "before", 0)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		limit, err := queryInt(r, "limit", defaultHistoryPage)
		if err == nil && limit > contexts.MaxHistoryPage {
			err = contexts.Errorf(contexts.CodeInvalid, "limit must be at most %d", contexts.MaxHistoryPage)
		}
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		p, err := svc.History(chi.URLParam(r, "id"), before, int(limit))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		resp := historyResponse{Entries: make([]entryJSON, len(p.Entries)), Dropped: p.Dropped}
		for i, e := range p.Entries {
			resp.Entries[i] = newEntryJSON(e)
		}
		if p.NextBefore > 0 {
			resp.NextBefore = &p.NextBefore
		}
		encode(w, http.StatusOK, resp)
	}
}

type contextIDEvent struct {
	ContextID string `json:"context_id"`
}

type startedEvent struct {
	ContextID string  `json:"context_id"`
	Kind      string  `json:"kind"`
	Code      *string `json:"code,omitempty"`
	Command   *string `json:"command,omitempty"`
}

type finishedEvent struct {
	ContextID string    `json:"context_id"`
	Entry     entryJSON `json:"entry"`
}

// eventJSON is what an event's data says.
func eventJSON(e contexts.Event) any {
	switch e.Type {
	case contexts.EventContextCreated:
		return newContextResponse(*e.Info)
	case contexts.EventExecutionStarted:
		s := startedEvent{ContextID: e.ContextID, Kind: e.Kind}
		if e.Kind == contexts.KindCommand {
			s.Command = &e.Command
		} else {
			s.Code = &e.Code
		}
		return s
	case contexts.EventExecutionFinished:
		return finishedEvent{ContextID: e.ContextID, Entry: newEntryJSON(*e.Entry)}
	}
	return contextIDEvent{ContextID: e.ContextID}
}

// handleEvents streams the events of every context as Server-Sent Events
// until the client goes, the daemon shuts down, or the client falls
// behind: a client that takes more than writeWait to accept a write, or
// lets the subscription's queue fill, is cut off.
func handleEvents(log *slog.Logger, svc contextService) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		events, stop := svc.Subscribe()
		defer stop()
		sse := newSSEWriter(w)
		defer sse.done()
		if sse.start() != nil {
			return
		}
		err := pump(events, r.Context().Done(), func(e contexts.Event) error { return sse.send(e.Type, eventJSON(e)) }, sse.keepAlive)
		switch {
		case err != nil:
			log.Warn("cut off an event stream's client", "error", err)
		case r.Context().Err() == nil:
			log.Debug("ended an event stream: it fell behind, or the daemon is shutting down")
		}
	}
}

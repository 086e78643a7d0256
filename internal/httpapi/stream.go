package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/kernel"
)

// keepAlive is how often a silent stream sends a comment, so that proxies
// and clients do not give up on a long quiet run.
const keepAlive = 15 * time.Second

// wantsEventStream reports whether the client asked for Server-Sent Events.
func wantsEventStream(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "text/event-stream" {
			return true
		}
	}
	return false
}

// eventQueue passes output from the kernel's reader, which must not block,
// to the goroutine writing the response. It is bounded by the output cap.
type eventQueue struct {
	mu     sync.Mutex
	events []kernel.Event
	ready  chan struct{}
}

func newEventQueue() *eventQueue { return &eventQueue{ready: make(chan struct{}, 1)} }

func (q *eventQueue) push(e kernel.Event) {
	q.mu.Lock()
	q.events = append(q.events, e)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *eventQueue) take() []kernel.Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	events := q.events
	q.events = nil
	return events
}

// sseWriter writes Server-Sent Events.
type sseWriter struct {
	w http.ResponseWriter
	f http.Flusher
}

func (s sseWriter) send(event string, data any) {
	b, _ := json.Marshal(data)
	fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", event, b)
	s.f.Flush()
}

type textEvent struct {
	Text string `json:"text"`
}

// streamExecute runs an execution and streams its output as it happens:
// stdout, stderr, result and error events, then one end event with the same
// summary the blocking call returns, or a failure event with an error body
// when the execution could not run. A client that goes away interrupts its
// code, as with the blocking call.
func streamExecute(w http.ResponseWriter, r *http.Request, log *slog.Logger, svc contextService, id string, req contexts.ExecuteRequest) {
	// Answer a missing context with a plain 404, and one being taken over
	// with a 503 to retry, before the stream starts.
	c, err := svc.Get(id)
	if err == nil && c.Status == contexts.StatusRecovering {
		err = contexts.ErrRecovering
	}
	if err != nil {
		writeError(w, r, log, err)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, r, log, fmt.Errorf("response writer cannot flush"))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	sse := sseWriter{w: w, f: flusher}

	tick := func() {
		fmt.Fprint(w, ": keep-alive\n\n")
		flusher.Flush()
	}
	e, err := executeStreaming(r.Context(), svc, id, req, func(ev kernel.Event) { sendEvent(sse, ev) }, tick)
	if err != nil {
		sse.send("failure", errorBody(r, log, err))
		return
	}
	sse.send("end", newExecuteResponse(e))
}

// executeStreaming runs req and calls emit with each piece of output as it
// arrives, and idle every keepAlive while none does, both from the calling
// goroutine: the kernel's reader, which delivers output, must never wait
// for a slow client.
func executeStreaming(ctx context.Context, svc contextService, id string, req contexts.ExecuteRequest, emit func(kernel.Event), idle func()) (contexts.Execution, error) {
	q := newEventQueue()
	req.OnEvent = q.push
	type outcome struct {
		e   contexts.Execution
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		e, err := svc.Execute(ctx, id, req)
		done <- outcome{e, err}
	}()

	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		select {
		case <-q.ready:
			for _, ev := range q.take() {
				emit(ev)
			}
		case <-tick.C:
			if idle != nil {
				idle()
			}
		case o := <-done:
			for _, ev := range q.take() {
				emit(ev)
			}
			return o.e, o.err
		}
	}
}

func sendEvent(sse sseWriter, ev kernel.Event) {
	switch ev.Type {
	case "stdout", "stderr":
		sse.send(ev.Type, textEvent{Text: ev.Text})
	case "result":
		sse.send("result", newResultJSON(*ev.Output))
	case "error":
		sse.send("error", newErrorJSON(ev.Error))
	}
}

package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// maxQueued bounds the output waiting for a client to read it, in bytes.
// A client that falls further behind is cut off and its execution
// interrupted, so that no client can make the daemon hold output without
// limit. With the default --max-output, which bounds what one execution
// sends, it is never reached: a slow client is cut off by the write
// deadline instead. It holds for a larger --max-output.
const maxQueued = 16 << 20

// errSlowClient ends a stream whose client fell maxQueued behind.
var errSlowClient = errors.New("the client did not keep up with the output and was cut off")

// eventQueue passes output from the kernel's reader, which must not block,
// to the goroutine writing the response. It holds at most maxQueued bytes:
// past that it drops everything and calls overflow, once.
type eventQueue struct {
	mu       sync.Mutex
	events   []kernel.Event
	size     int
	over     bool
	overflow func()
	ready    chan struct{}
}

func newEventQueue(overflow func()) *eventQueue {
	return &eventQueue{ready: make(chan struct{}, 1), overflow: overflow}
}

func (q *eventQueue) push(e kernel.Event) {
	q.mu.Lock()
	if q.over {
		q.mu.Unlock()
		return
	}
	q.size += eventSize(e)
	if q.over = q.size > maxQueued; q.over {
		q.events = nil
	} else {
		q.events = append(q.events, e)
	}
	over := q.over
	q.mu.Unlock()
	if over {
		q.overflow()
	}
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// take returns the events queued since the last take, or errSlowClient once
// the queue overflowed.
func (q *eventQueue) take() ([]kernel.Event, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.over {
		return nil, errSlowClient
	}
	events := q.events
	q.events = nil
	q.size = 0
	return events, nil
}

// eventSize is about the bytes an event holds.
func eventSize(e kernel.Event) int {
	n := len(e.Text)
	if e.Output != nil {
		n += e.Output.Size()
	}
	if e.Error != nil {
		n += len(e.Error.Name) + len(e.Error.Value) + len(e.Error.Traceback)
	}
	return n
}

// sseWriter writes one Server-Sent Events response: its headers, its
// events and keep-alive comments. Each write must be done within
// writeWait, so that a client that stops reading is cut off rather than
// holding its handler, and what the handler holds, forever. The headers go
// with the first write: until then the handler can still answer with a
// plain error and its status.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
}

func newSSEWriter(w http.ResponseWriter) *sseWriter {
	return &sseWriter{w: w, rc: http.NewResponseController(w)}
}

// start answers 200 with the headers of an event stream, once, and flushes
// them: the client learns that its stream began before any event.
func (s *sseWriter) start() error {
	if s.started {
		return nil
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // or proxies such as nginx hold events back
	s.w.WriteHeader(http.StatusOK)
	s.rc.SetWriteDeadline(time.Now().Add(writeWait))
	return s.rc.Flush()
}

func (s *sseWriter) send(event string, data any) error {
	if err := s.start(); err != nil {
		return err
	}
	b, _ := json.Marshal(data)
	s.rc.SetWriteDeadline(time.Now().Add(writeWait))
	// Written in pieces: a result can be megabytes, not worth copying again.
	io.WriteString(s.w, "event: "+event+"\ndata: ")
	s.w.Write(b)
	if _, err := io.WriteString(s.w, "\n\n"); err != nil {
		return err
	}
	return s.rc.Flush()
}

// keepAlive sends a comment, which clients ignore.
func (s *sseWriter) keepAlive() error {
	if err := s.start(); err != nil {
		return err
	}
	s.rc.SetWriteDeadline(time.Now().Add(writeWait))
	if _, err := io.WriteString(s.w, ": keep-alive\n\n"); err != nil {
		return err
	}
	return s.rc.Flush()
}

// done clears the write deadline: net/http keeps it for the connection's
// next request.
func (s *sseWriter) done() { s.rc.SetWriteDeadline(time.Time{}) }

// finish ends a stream of output: with an end event holding summary, or,
// when the run failed with err, a failure event with its error body, or a
// plain error response when the stream has not started. A client that was
// cut off, or went away, is told nothing more.
func (s *sseWriter) finish(r *http.Request, log *slog.Logger, id string, summary any, err error) {
	switch {
	case errors.Is(err, errSlowClient) || errors.Is(err, errWrite):
		log.Warn("cut off a streaming client", "context_id", id, "error", err)
	case err != nil && !s.started:
		writeError(s.w, r, log, err)
	case err != nil && r.Context().Err() != nil:
		// The client went away: nobody to tell.
	case err != nil:
		s.send("failure", errorBody(r, log, err))
	default:
		s.send("end", summary)
	}
}

type textEvent struct {
	Text string `json:"text"`
}

// streamExecute runs an execution and streams its output as it happens:
// stdout, stderr, result and error events, then one end event with the same
// summary the blocking call returns, or a failure event with an error body
// when the execution could not run. A client that goes away interrupts its
// code, as with the blocking call, and so does one that does not keep up:
// it is cut off.
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
	sse := newSSEWriter(w)
	defer sse.done()
	if sse.start() != nil {
		return
	}
	e, err := executeStreaming(r.Context(), svc, id, req, func(ev kernel.Event) error { return sendEvent(sse, ev) }, sse.keepAlive)
	sse.finish(r, log, id, newExecuteResponse(e), err)
}

// errWrite marks a failure to write to the client.
var errWrite = errors.New("write to the client")

// executeStreaming runs req through streamOutput.
func executeStreaming(ctx context.Context, svc contextService, id string, req contexts.ExecuteRequest, emit func(kernel.Event) error, idle func() error) (contexts.Execution, error) {
	return streamOutput(ctx, func(ctx context.Context, push func(kernel.Event)) (contexts.Execution, error) {
		req.OnEvent = push
		return svc.Execute(ctx, id, req)
	}, emit, idle)
}

// streamOutput calls run, which pushes output as it goes, in a goroutine
// of its own, and calls emit with each piece of output as it arrives, and
// idle every keepAlive, both from the calling goroutine: the kernel's
// reader, which delivers output, must never wait for a slow client. When
// emit or idle fails, or the client falls maxQueued behind, run's ctx ends,
// which stops it as when the client goes away, and streamOutput returns an
// error wrapping errWrite or errSlowClient once run has returned.
func streamOutput[T any](ctx context.Context, run func(ctx context.Context, push func(kernel.Event)) (T, error), emit func(kernel.Event) error, idle func() error) (T, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	q := newEventQueue(cancel)
	var (
		res    T
		runErr error
	)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		res, runErr = run(ctx, q.push)
	}()
	send := func(struct{}) error {
		events, err := q.take()
		if err != nil {
			return err
		}
		for _, ev := range events {
			if err := emit(ev); err != nil {
				return fmt.Errorf("%w: %v", errWrite, err)
			}
		}
		return nil
	}
	var ping func() error
	if idle != nil {
		ping = func() error {
			if err := idle(); err != nil {
				return fmt.Errorf("%w: %v", errWrite, err)
			}
			return nil
		}
	}
	failed := pump(q.ready, finished, send, ping)
	if failed == nil {
		failed = send(struct{}{}) // what came with the end
	}
	if failed != nil {
		cancel()
	}
	<-finished
	if failed != nil {
		return res, failed
	}
	return res, runErr
}

// pump is the loop of every stream: it calls emit with each value from in,
// and idle, when not nil, every keepAlive, until in or stop is closed, or
// emit or idle fails, whose error it returns. Writing only from here keeps
// one writer per response.
func pump[T any](in <-chan T, stop <-chan struct{}, emit func(T) error, idle func() error) error {
	var tick <-chan time.Time
	if idle != nil {
		t := time.NewTicker(keepAlive)
		defer t.Stop()
		tick = t.C
	}
	for {
		var err error
		select {
		case v, ok := <-in:
			if !ok {
				return nil
			}
			err = emit(v)
		case <-tick:
			err = idle()
		case <-stop:
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func sendEvent(sse *sseWriter, ev kernel.Event) error {
	switch ev.Type {
	case "stdout", "stderr":
		return sse.send(ev.Type, textEvent{Text: ev.Text})
	case "result":
		return sse.send("result", newResultJSON(*ev.Output))
	case "error":
		return sse.send("error", newErrorJSON(ev.Error))
	}
	return nil
}

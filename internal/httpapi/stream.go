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

// sseWriter writes Server-Sent Events. Each write must be done within
// writeWait, so that a client that stops reading is cut off rather than
// holding its handler, and what the handler holds, forever.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func newSSEWriter(w http.ResponseWriter) sseWriter {
	return sseWriter{w: w, rc: http.NewResponseController(w)}
}

func (s sseWriter) send(event string, data any) error {
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
func (s sseWriter) keepAlive() error {
	s.rc.SetWriteDeadline(time.Now().Add(writeWait))
	if _, err := io.WriteString(s.w, ": keep-alive\n\n"); err != nil {
		return err
	}
	return s.rc.Flush()
}

// start answers 200 with the headers of an event stream.
func (s sseWriter) start() {
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // or proxies such as nginx hold events back
	s.w.WriteHeader(http.StatusOK)
}

func (s sseWriter) flush() error {
	s.rc.SetWriteDeadline(time.Now().Add(writeWait))
	return s.rc.Flush()
}

// done clears the write deadline: net/http keeps it for the connection's
// next request.
func (s sseWriter) done() { s.rc.SetWriteDeadline(time.Time{}) }

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
	sse.start()
	if sse.flush() != nil {
		return
	}
	e, err := executeStreaming(r.Context(), svc, id, req, func(ev kernel.Event) error { return sendEvent(sse, ev) }, sse.keepAlive)
	switch {
	case errors.Is(err, errSlowClient) || errors.Is(err, errWrite):
		log.Warn("cut off a streaming client", "context_id", id, "error", err)
	case err != nil:
		sse.send("failure", errorBody(r, log, err))
	default:
		sse.send("end", newExecuteResponse(e))
	}
}

// errWrite marks a failure to write to the client.
var errWrite = errors.New("write to the client")

// executeStreaming runs req and calls emit with each piece of output as it
// arrives, and idle every keepAlive while none does, both from the calling
// goroutine: the kernel's reader, which delivers output, must never wait
// for a slow client. When emit or idle fails, or the client falls
// maxQueued behind, the execution is interrupted, as when the client goes
// away, and executeStreaming returns an error wrapping errWrite or
// errSlowClient once it has stopped.
func executeStreaming(ctx context.Context, svc contextService, id string, req contexts.ExecuteRequest, emit func(kernel.Event) error, idle func() error) (contexts.Execution, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	q := newEventQueue(cancel)
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
	var failed error
	send := func() {
		events, err := q.take()
		for _, ev := range events {
			if err == nil {
				if werr := emit(ev); werr != nil {
					err = fmt.Errorf("%w: %v", errWrite, werr)
				}
			}
		}
		if err != nil && failed == nil {
			failed = err
			cancel()
		}
	}

	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		select {
		case <-q.ready:
			if failed == nil {
				send()
			}
		case <-tick.C:
			if idle != nil && failed == nil {
				if err := idle(); err != nil {
					failed = fmt.Errorf("%w: %v", errWrite, err)
					cancel()
				}
			}
		case o := <-done:
			if failed == nil {
				send()
			}
			if failed != nil {
				return o.e, failed
			}
			return o.e, o.err
		}
	}
}

func sendEvent(sse sseWriter, ev kernel.Event) error {
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

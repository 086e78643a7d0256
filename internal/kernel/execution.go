package kernel

import (
	"encoding/json"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"
)

// Result is everything one execution produced.
type Result struct {
	Stdout string
	Stderr string
	// Truncated is true when stdout or stderr went past the output cap.
	Truncated bool
	Outputs   []Output
	// Error is set when the code raised, timed out or lost its kernel.
	Error *Error
	// ExecutionCount is the kernel's counter for this execution; nil when the
	// kernel never reported one.
	ExecutionCount *int
	// Status is the execute_reply status: ok, error or aborted; empty when no
	// reply came.
	Status string
	// Restarted is true when the kernel was restarted during the execution
	// (it died, or ignored an interrupt): its state is lost.
	Restarted bool
}

// Event is one piece of output, delivered as it arrives.
type Event struct {
	Type   string  // stdout, stderr, result or error
	Text   string  // for stdout and stderr: the text kept under the cap
	Output *Output // for result
	Error  *Error  // for error
}

// Output is one rich result: an execute_result or a display_data MIME bundle.
type Output struct {
	Type     string // execute_result or display_data
	Data     map[string]json.RawMessage
	Metadata json.RawMessage
}

// Error describes why an execution did not succeed.
type Error struct {
	Name      string
	Value     string
	Traceback string // plain text, without ANSI colour codes
}

// Names of errors that sandboxd itself reports, as opposed to those the code raised.
const (
	ErrTimeout    = "TimeoutError"
	ErrKernelDied = "KernelDied"
)

// Markers for output that was not kept: a stream cut at the output cap, and
// a message too large to read.
const (
	truncatedMarker = "\n[output truncated]\n"
	droppedMarker   = "\n[output too large to show was dropped]\n"
)

var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// execution collects the messages answering one execute_request. It ends
// only when both the shell execute_reply and the iopub idle status for the
// request have arrived: outputs may trail the reply on the other channel.
type execution struct {
	done chan struct{}
	// started is closed when the kernel starts running the request: only
	// then does an interrupt hit it rather than an idle kernel.
	started chan struct{}
	// onEvent, when set, is called with each piece of output as it arrives,
	// from the connection's reader: it must not block.
	onEvent func(Event)

	mu        sync.Mutex
	res       Result
	stdout    cappedText
	stderr    cappedText
	gotReply  bool
	gotIdle   bool
	finished  bool
	oversized bool // a message too large to read was dropped
}

func newExecution(maxOutput int) *execution {
	return &execution{
		done:    make(chan struct{}),
		started: make(chan struct{}),
		stdout:  cappedText{limit: maxOutput},
		stderr:  cappedText{limit: maxOutput},
	}
}

// handle takes one message whose parent is this execution's request.
func (e *execution) handle(m *Message) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.finished {
		return
	}
	switch m.Header.MsgType {
	case "stream":
		var c streamContent
		if json.Unmarshal(m.Content, &c) != nil {
			return
		}
		if c.Name == "stderr" {
			e.emit(Event{Type: "stderr", Text: e.stderr.write(c.Text)})
		} else {
			e.emit(Event{Type: "stdout", Text: e.stdout.write(c.Text)})
		}
	case "execute_result", "display_data":
		var c dataContent
		if json.Unmarshal(m.Content, &c) != nil {
			return
		}
		out := Output{Type: m.Header.MsgType, Data: c.Data, Metadata: c.Metadata}
		e.res.Outputs = append(e.res.Outputs, out)
		e.emit(Event{Type: "result", Output: &out})
		if c.ExecutionCount != nil {
			e.res.ExecutionCount = c.ExecutionCount
		}
	case "error":
		var c errorContent
		if json.Unmarshal(m.Content, &c) != nil {
			return
		}
		tb := ansiEscape.ReplaceAllString(strings.Join(c.Traceback, "\n"), "")
		e.res.Error = &Error{Name: c.Name, Value: c.Value, Traceback: tb}
		e.stderr.write(tb + "\n")
		e.emit(Event{Type: "error", Error: e.res.Error})
	case "status":
		var c statusContent
		if json.Unmarshal(m.Content, &c) != nil {
			return
		}
		switch c.ExecutionState {
		case "busy":
			e.markStarted()
		case "idle":
			e.gotIdle = true
		}
	case "execute_reply":
		var c replyContent
		if json.Unmarshal(m.Content, &c) != nil {
			return
		}
		e.gotReply = true
		e.res.Status = c.Status
		if c.ExecutionCount != nil {
			e.res.ExecutionCount = c.ExecutionCount
		}
		// An aborted request never ran: nothing more will come for it.
		if c.Status == "aborted" {
			e.gotIdle = true
		}
	}
	if e.gotReply && e.gotIdle {
		e.finishLocked(nil)
	}
}

// cappedText keeps the first limit bytes of a stream (all when limit <= 0)
// and marks where it was cut.
type cappedText struct {
	b     strings.Builder
	limit int
	cut   bool
}

// write appends text and returns what of it was kept.
func (c *cappedText) write(text string) string {
	if c.cut {
		return ""
	}
	room := c.limit - c.b.Len()
	if c.limit <= 0 || len(text) <= room {
		c.b.WriteString(text)
		return text
	}
	// Cut on a rune boundary so the kept text stays valid UTF-8.
	for room > 0 && !utf8.RuneStart(text[room]) {
		room--
	}
	kept := text[:room] + truncatedMarker
	c.b.WriteString(kept)
	c.cut = true
	return kept
}

func (e *execution) emit(ev Event) {
	if e.onEvent != nil && (ev.Text != "" || ev.Output != nil || ev.Error != nil) {
		e.onEvent(ev)
	}
}

// dropped records output too large to read: a message over the size limit.
// What follows it is still kept.
func (e *execution) dropped() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.finished {
		e.oversized = true
		e.emit(Event{Type: "stdout", Text: e.stdout.write(droppedMarker)})
	}
}

// fail ends the execution early with an error of sandboxd's own.
func (e *execution) fail(err *Error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.finishLocked(err)
}

// failRestarted ends the execution because its kernel restarted.
func (e *execution) failRestarted(err *Error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.finished {
		e.res.Restarted = true
	}
	e.finishLocked(err)
}

func (e *execution) markStarted() {
	select {
	case <-e.started:
	default:
		close(e.started)
	}
}

func (e *execution) finishLocked(err *Error) {
	if e.finished {
		return
	}
	e.finished = true
	e.markStarted()
	if err != nil {
		e.res.Error = err
	}
	close(e.done)
}

// result returns what was collected so far.
func (e *execution) result() Result {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.res
	r.Stdout = e.stdout.b.String()
	r.Stderr = e.stderr.b.String()
	r.Truncated = e.stdout.cut || e.stderr.cut || e.oversized
	return r
}

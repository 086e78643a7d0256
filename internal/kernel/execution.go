package kernel

import (
	"encoding/json"
	"regexp"
	"strings"
	"sync"

	"github.com/sandboxd/sandboxd/internal/bound"
)

// Result is everything one execution produced.
type Result struct {
	Stdout string
	Stderr string
	// Truncated is true when output went past the output cap, or was too
	// large to read, and was not all kept.
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

// Size is about what o takes in memory and on the wire, in bytes.
func (o *Output) Size() int {
	n := len(o.Type) + len(o.Metadata)
	for k, v := range o.Data {
		n += len(k) + len(v)
	}
	return n
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

// droppedMarker stands for a message too large to read; output cut at the
// output cap ends with bound.Marker.
const droppedMarker = "\n[output too large to show was dropped]\n"

// maxErrorText caps an error's name and value, which are kept even past
// the output cap so that a failure can always be told apart.
const maxErrorText = 64 << 10

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

	mu       sync.Mutex
	res      Result
	budget   *bound.Budget // one cap for stdout, stderr, rich results and tracebacks
	stdout   *bound.Text
	stderr   *bound.Text
	gotReply bool
	gotIdle  bool
	finished bool
	lost     bool // output was dropped outside the budget: too large to read or to keep
}

func newExecution(maxOutput int) *execution {
	b := bound.NewBudget(maxOutput)
	return &execution{
		done:    make(chan struct{}),
		started: make(chan struct{}),
		budget:  b,
		stdout:  bound.NewText(b, nil),
		stderr:  bound.NewText(b, nil),
	}
}

// handle takes one message whose parent is this execution's request.
func (e *execution) handle(m *Message) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.finished {
		return
	}
	t := m.Header.MsgType
	if e.budget.Exceeded() && (t == "stream" || t == "execute_result" || t == "display_data") {
		return // past the cap: not even worth decoding (execute_reply has the count)
	}
	switch t {
	case "stream":
		var c streamContent
		if json.Unmarshal(m.Content, &c) != nil {
			return
		}
		if c.Name == "stderr" {
			e.emit(Event{Type: "stderr", Text: e.stderr.Add(c.Text)})
		} else {
			e.emit(Event{Type: "stdout", Text: e.stdout.Add(c.Text)})
		}
	case "execute_result", "display_data":
		var c dataContent
		if json.Unmarshal(m.Content, &c) != nil {
			return
		}
		if c.ExecutionCount != nil {
			e.res.ExecutionCount = c.ExecutionCount
		}
		out := Output{Type: t, Data: c.Data, Metadata: c.Metadata}
		if ok, cutNow := e.budget.Reserve(out.Size()); !ok {
			if cutNow {
				e.markCut()
			}
			return
		}
		e.res.Outputs = append(e.res.Outputs, out)
		e.emit(Event{Type: "result", Output: &out})
	case "error":
		var c errorContent
		if json.Unmarshal(m.Content, &c) != nil {
			return
		}
		name, value := e.clip(c.Name), e.clip(c.Value)
		fits, cutNow := e.budget.Reserve(len(name) + len(value))
		if cutNow {
			e.markCut()
		}
		if !fits {
			// Past the cap the error is kept for the summary alone: code
			// that sends errors of its own in a loop streams no more.
			e.res.Error = &Error{Name: name, Value: value}
			e.lost = true
			return
		}
		// The traceback is sent twice, as the error's and at the end of
		// stderr: it counts twice.
		tb, cut := e.budget.Fit(ansiEscape.ReplaceAllString(strings.Join(c.Traceback, "\n"), ""))
		if cut {
			tb += bound.Marker
		}
		e.res.Error = &Error{Name: name, Value: value, Traceback: tb}
		e.stderr.Add(tb + "\n")
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

// markCut marks on stdout the output that went past the cap, which was
// not text: a rich result or an error.
func (e *execution) markCut() {
	e.stdout.Mark()
	e.emit(Event{Type: "stdout", Text: bound.Marker})
}

// clip cuts an error's name or value at maxErrorText.
func (e *execution) clip(s string) string {
	if len(s) <= maxErrorText {
		return s
	}
	e.lost = true
	return bound.Prefix(s, maxErrorText) + bound.Marker
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
		e.lost = true
		e.emit(Event{Type: "stdout", Text: e.stdout.Add(droppedMarker)})
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
	r.Stdout = e.stdout.String()
	r.Stderr = e.stderr.String()
	r.Truncated = e.budget.Exceeded() || e.lost
	return r
}

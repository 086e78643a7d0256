package kernel

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

func TestExecutionResult(t *testing.T) {
	tests := []struct {
		name string
		msgs []fixture
		want Result
	}{
		{
			name: "print",
			msgs: []fixture{fxBusy, fxInput, fxStdout1, fxReplyOK1, fxIdle},
			want: Result{Stdout: "1\n", Status: "ok", ExecutionCount: intPtr(1)},
		},
		{
			name: "stdout and stderr are concatenated in order",
			msgs: []fixture{
				fxBusy,
				fxStream("stdout", "a"),
				fxStream("stderr", "warning: x\n"),
				fxStream("stdout", "b\n"),
				fxStream("stderr", "warning: y\n"),
				fxStream("stdout", "c"),
				fxReplyOK1, fxIdle,
			},
			want: Result{Stdout: "ab\nc", Stderr: "warning: x\nwarning: y\n", Status: "ok", ExecutionCount: intPtr(1)},
		},
		{
			name: "execute_result",
			msgs: []fixture{fxBusy, fxInput, fxResult2, fxReplyOK1, fxIdle},
			want: Result{
				Status:         "ok",
				ExecutionCount: intPtr(1),
				Outputs: []Output{{
					Type:     "execute_result",
					Data:     map[string]json.RawMessage{"text/plain": json.RawMessage(`"2"`)},
					Metadata: json.RawMessage(`{}`),
				}},
			},
		},
		{
			name: "error",
			msgs: []fixture{
				fxBusy, fxInput,
				fxStream("stdout", "before\n"),
				fxStream("stderr", "warning\n"),
				fxZeroDivision, fxReplyError2, fxIdle,
			},
			want: Result{
				Stdout:         "before\n",
				Stderr:         "warning\n" + fxZeroDivisionTraceback + "\n",
				Status:         "error",
				ExecutionCount: intPtr(2),
				Error: &Error{
					Name:      "ZeroDivisionError",
					Value:     "division by zero",
					Traceback: fxZeroDivisionTraceback,
				},
			},
		},
		{
			name: "rich outputs keep their order, type and bytes",
			msgs: []fixture{
				fxBusy,
				fxPNG,
				fxStream("stdout", "between\n"),
				{"execute_result", `{"data": {"text/html": "\u003cb\u003e2\u003c/b\u003e", "text/plain": "2"}, "metadata": {}, "execution_count": 4}`},
				{"display_data", `{"data": {"application/json": {"a": [1, 2.50, "\u00e9"]}}, "metadata": {"application/json": {"expanded": false}}, "transient": {"display_id": "x1"}}`},
				{"execute_reply", `{"status": "ok", "execution_count": 4, "user_expressions": {}, "payload": []}`},
				fxIdle,
			},
			want: Result{
				Stdout:         "between\n",
				Status:         "ok",
				ExecutionCount: intPtr(4),
				Outputs: []Output{
					{
						Type: "display_data",
						Data: map[string]json.RawMessage{
							"image/png":  json.RawMessage(`"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==\n"`),
							"text/plain": json.RawMessage(`"<Figure size 640x480 with 1 Axes>"`),
						},
						Metadata: json.RawMessage(`{"image/png": {"width": 1, "height": 1}}`),
					},
					{
						Type: "execute_result",
						Data: map[string]json.RawMessage{
							"text/html":  json.RawMessage(`"\u003cb\u003e2\u003c/b\u003e"`),
							"text/plain": json.RawMessage(`"2"`),
						},
						Metadata: json.RawMessage(`{}`),
					},
					{
						Type:     "display_data",
						Data:     map[string]json.RawMessage{"application/json": json.RawMessage(`{"a": [1, 2.50, "\u00e9"]}`)},
						Metadata: json.RawMessage(`{"application/json": {"expanded": false}}`),
					},
				},
			},
		},
		{
			name: "execution count comes from the reply",
			msgs: []fixture{
				fxBusy,
				{"execute_input", `{"code": "x = 1", "execution_count": 7}`},
				{"execute_reply", `{"status": "ok", "execution_count": 7, "user_expressions": {}, "payload": []}`},
				fxIdle,
			},
			want: Result{Status: "ok", ExecutionCount: intPtr(7)},
		},
		{
			name: "output between reply and idle is kept",
			msgs: []fixture{fxBusy, fxReplyOK1, fxStream("stdout", "late\n"), fxPNG, fxIdle},
			want: Result{
				Stdout:         "late\n",
				Status:         "ok",
				ExecutionCount: intPtr(1),
				Outputs: []Output{{
					Type: "display_data",
					Data: map[string]json.RawMessage{
						"image/png":  json.RawMessage(`"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==\n"`),
						"text/plain": json.RawMessage(`"<Figure size 640x480 with 1 Axes>"`),
					},
					Metadata: json.RawMessage(`{"image/png": {"width": 1, "height": 1}}`),
				}},
			},
		},
		{
			name: "aborted",
			msgs: []fixture{fxAborted},
			want: Result{Status: "aborted"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := newExecution(0)
			feed(t, ex, tt.msgs...)
			if !isDone(ex) {
				t.Fatal("execution not done after its last message")
			}
			checkResult(t, ex.result(), tt.want)
		})
	}
}

func TestExecutionFinishesAfterReplyAndIdle(t *testing.T) {
	tests := []struct {
		name string
		msgs []fixture
		// doneAt is the index of the message that must finish the
		// execution; -1 when none may.
		doneAt int
	}{
		{"reply then idle", []fixture{fxBusy, fxInput, fxStdout1, fxReplyOK1, fxIdle}, 4},
		{"idle then reply", []fixture{fxBusy, fxInput, fxStdout1, fxIdle, fxReplyOK1}, 4},
		{"error reply then idle", []fixture{fxBusy, fxZeroDivision, fxReplyError2, fxIdle}, 3},
		{"aborted reply needs no idle", []fixture{fxAborted}, 0},
		{"aborted reply after busy", []fixture{fxBusy, fxAborted}, 1},
		{"reply without idle", []fixture{fxBusy, fxInput, fxStdout1, fxReplyOK1}, -1},
		{"idle without reply", []fixture{fxBusy, fxInput, fxStdout1, fxIdle}, -1},
		{"busy is not idle", []fixture{fxBusy, fxReplyOK1, fxBusy, fxStarting}, -1},
		{"error is not a reply", []fixture{fxBusy, fxZeroDivision, fxIdle}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := newExecution(0)
			for i, m := range messages(t, fxParentA, tt.msgs...) {
				ex.handle(m)
				want := tt.doneAt >= 0 && i >= tt.doneAt
				if got := isDone(ex); got != want {
					t.Fatalf("after message %d (%s %s): done = %v, want %v", i, m.Header.MsgType, m.Content, got, want)
				}
			}
		})
	}
}

func TestExecutionIgnoresMessagesAfterFinish(t *testing.T) {
	ex := newExecution(0)
	feed(t, ex, fxBusy, fxInput, fxStdout1, fxReplyOK1, fxIdle)
	if !isDone(ex) {
		t.Fatal("execution not done")
	}
	feed(t, ex,
		fxStream("stdout", "late\n"),
		fxStream("stderr", "late\n"),
		fxResult2,
		fxZeroDivision,
		fxReplyError2,
		fxIdle,
	)
	checkResult(t, ex.result(), Result{Stdout: "1\n", Status: "ok", ExecutionCount: intPtr(1)})
}

func TestExecutionFail(t *testing.T) {
	timeout := &Error{Name: ErrTimeout, Value: "execution exceeded the timeout of 1s"}

	t.Run("keeps what was collected", func(t *testing.T) {
		ex := newExecution(0)
		feed(t, ex, fxBusy, fxInput, fxStream("stdout", "partial\n"))
		ex.fail(timeout)
		if !isDone(ex) {
			t.Fatal("fail did not finish the execution")
		}
		checkResult(t, ex.result(), Result{
			Stdout: "partial\n",
			Error:  &Error{Name: "TimeoutError", Value: "execution exceeded the timeout of 1s"},
		})
	})

	t.Run("later fail and messages change nothing", func(t *testing.T) {
		ex := newExecution(0)
		feed(t, ex, fxStream("stdout", "partial\n"))
		ex.fail(timeout)
		ex.fail(&Error{Name: ErrKernelDied, Value: "the context was closed"})
		ex.fail(nil)
		feed(t, ex, fxStream("stderr", "late\n"), fxZeroDivision, fxReplyError2, fxIdle)
		checkResult(t, ex.result(), Result{
			Stdout: "partial\n",
			Error:  &Error{Name: "TimeoutError", Value: "execution exceeded the timeout of 1s"},
		})
	})

	t.Run("nil error", func(t *testing.T) {
		ex := newExecution(0)
		ex.fail(nil)
		if !isDone(ex) {
			t.Fatal("fail(nil) did not finish the execution")
		}
		checkResult(t, ex.result(), Result{})
	})

	t.Run("after a normal finish", func(t *testing.T) {
		ex := newExecution(0)
		feed(t, ex, fxBusy, fxStdout1, fxReplyOK1, fxIdle)
		ex.fail(timeout)
		checkResult(t, ex.result(), Result{Stdout: "1\n", Status: "ok", ExecutionCount: intPtr(1)})
	})
}

// TestExecutionConcurrentFail races the reader goroutine's messages against
// a fail from Execute, as a timeout does; run it with -race.
func TestExecutionConcurrentFail(t *testing.T) {
	ms := messages(t, fxParentA, fxBusy, fxStdout1, fxStdout1, fxStdout1, fxReplyOK1, fxIdle)
	for range 50 {
		ex := newExecution(0)
		var wg sync.WaitGroup
		wg.Go(func() {
			for _, m := range ms {
				ex.handle(m)
			}
		})
		wg.Go(func() {
			ex.fail(&Error{Name: ErrTimeout})
			_ = ex.result()
		})
		wg.Wait()
		<-ex.done
		r := ex.result()
		if r.Error == nil {
			if r.Status != "ok" || r.Stdout != "1\n1\n1\n" {
				t.Fatalf("finished normally with %+v", r)
			}
		} else if r.Error.Name != ErrTimeout {
			t.Fatalf("Error = %+v, want %s", r.Error, ErrTimeout)
		}
	}
}

func TestExecutionOutputCap(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 1<<12) // 64 KiB
	tests := []struct {
		name   string
		limit  int
		writes []string
		want   string
		cut    bool
	}{
		{"under the cap", 10, []string{"hello\n"}, "hello\n", false},
		{"under the cap in several writes", 10, []string{"ab", "cd", "ef"}, "abcdef", false},
		{"exactly at the cap", 5, []string{"hello"}, "hello", false},
		{"one byte past the cap", 5, []string{"hello", "!"}, "hello" + truncatedMarkerWant, true},
		{"past the cap in one write", 4, []string{"abcdefgh"}, "abcd" + truncatedMarkerWant, true},
		{"past the cap across writes", 6, []string{"abc", "defgh", "ijk"}, "abcdef" + truncatedMarkerWant, true},
		{"writes after the cut are dropped", 3, []string{"abcd", "e", "", "fgh"}, "abc" + truncatedMarkerWant, true},
		{"two-byte rune straddling the cap", 4, []string{"abcé"}, "abc" + truncatedMarkerWant, true},
		{"two-byte rune ending at the cap", 5, []string{"abcé!"}, "abcé" + truncatedMarkerWant, true},
		{"four-byte rune straddling the cap", 3, []string{"a😀b"}, "a" + truncatedMarkerWant, true},
		{"four-byte rune at the start", 2, []string{"😀"}, truncatedMarkerWant, true},
		{"rune straddling the cap across writes", 6, []string{"abcd", "😀"}, "abcd" + truncatedMarkerWant, true},
		{"zero means no cap", 0, []string{big, "é😀"}, big + "é😀", false},
		{"negative means no cap", -1, []string{big}, big, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := newExecution(tt.limit)
			for _, w := range tt.writes {
				feed(t, ex, fxStream("stdout", w))
			}
			r := ex.result()
			if r.Stdout != tt.want {
				t.Errorf("Stdout = %q, want %q", shorten(r.Stdout), shorten(tt.want))
			}
			if r.Truncated != tt.cut {
				t.Errorf("Truncated = %v, want %v", r.Truncated, tt.cut)
			}
			if !utf8.ValidString(r.Stdout) {
				t.Errorf("Stdout is not valid UTF-8: %q", shorten(r.Stdout))
			}
			if r.Stderr != "" {
				t.Errorf("Stderr = %q, want empty", r.Stderr)
			}
		})
	}
}

// truncatedMarkerWant is spelled out rather than taken from the code so a
// change to the marker shows up here.
const truncatedMarkerWant = "\n[output truncated]\n"

func shorten(s string) string {
	if len(s) > 80 {
		return s[:40] + "..." + s[len(s)-40:]
	}
	return s
}

// stdout and stderr share one cap: the first write past it is cut, and
// every write after it is dropped, whichever stream it is on.
// Past the cap, errors are kept for the result alone, not streamed: code
// that sends error messages of its own in a loop gets nothing more out.
func TestExecutionErrorsPastCap(t *testing.T) {
	ex := newExecution(64)
	var events int
	ex.onEvent = func(Event) { events++ }
	msgs := []fixture{fxStream("stdout", strings.Repeat("x", 64))}
	for range 1000 {
		msgs = append(msgs, fxZeroDivision)
	}
	feed(t, ex, append(msgs, fxReplyError2, fxIdle)...)
	r := ex.result()
	if !r.Truncated || r.Error == nil || r.Error.Name != "ZeroDivisionError" || r.Error.Traceback != "" || len(r.Stderr) != 0 {
		t.Errorf("result %+v", r)
	}
	if events != 2 {
		t.Errorf("%d events, want the stdout one and the truncation marker", events)
	}
}

func TestExecutionOutputCapShared(t *testing.T) {
	ex := newExecution(4)
	feed(t, ex, fxStream("stdout", "ab"), fxStream("stderr", "cdefg"), fxStream("stdout", "h"))
	checkResult(t, ex.result(), Result{Stdout: "ab", Stderr: "cd" + truncatedMarkerWant, Truncated: true})
}

func TestExecutionOutputCapTraceback(t *testing.T) {
	// The traceback is kept twice, as the Error's and at the end of stderr,
	// and counts twice; the name and value count once, and are kept past
	// the cap.
	ex := newExecution(len("ZeroDivisionError") + len("division by zero") + len(fxZeroDivisionTraceback) + 10)
	feed(t, ex, fxZeroDivision, fxReplyError2, fxIdle)
	checkResult(t, ex.result(), Result{
		Stderr:         "----------" + truncatedMarkerWant,
		Truncated:      true,
		Status:         "error",
		ExecutionCount: intPtr(2),
		Error:          &Error{Name: "ZeroDivisionError", Value: "division by zero", Traceback: fxZeroDivisionTraceback},
	})

	ex = newExecution(4)
	feed(t, ex, fxStream("stdout", "abcdef"), fxZeroDivision, fxReplyError2, fxIdle)
	checkResult(t, ex.result(), Result{
		Stdout:         "abcd" + truncatedMarkerWant,
		Truncated:      true,
		Status:         "error",
		ExecutionCount: intPtr(2),
		Error:          &Error{Name: "ZeroDivisionError", Value: "division by zero"},
	})
}

// Rich results count against the same cap as the streams: one that does
// not fit is dropped, with the marker on stdout, and so is all that follows.
func TestExecutionOutputCapResults(t *testing.T) {
	html := func(n int) fixture {
		b, _ := json.Marshal(map[string]any{"data": map[string]string{"text/html": strings.Repeat("x", n)}, "metadata": map[string]any{}})
		return fixture{"display_data", string(b)}
	}
	// Each result takes its MIME type, its JSON string and {} of metadata.
	one := len("display_data") + len("text/html") + len(`""`) + len("{}") + 100
	var events []Event
	ex := newExecution(2*one + 50)
	ex.onEvent = func(e Event) { events = append(events, e) }
	feed(t, ex, fxBusy, html(100), fxStream("stdout", "a"), html(100), html(100), fxStream("stdout", "b"), html(10), fxReplyOK1, fxIdle)
	r := ex.result()
	if len(r.Outputs) != 2 || !r.Truncated || r.Stdout != "a"+truncatedMarkerWant {
		t.Errorf("%d outputs, truncated %v, stdout %q; want 2, true, %q", len(r.Outputs), r.Truncated, r.Stdout, "a"+truncatedMarkerWant)
	}
	var types []string
	for _, e := range events {
		types = append(types, e.Type)
	}
	if got := strings.Join(types, " "); got != "result stdout result stdout" || events[3].Text != truncatedMarkerWant {
		t.Errorf("events %q, the last %q", got, events[len(events)-1].Text)
	}
	if !isDone(ex) {
		t.Error("not done after reply and idle")
	}
}

// A huge error name or value is clipped, not kept whole past the cap.
func TestExecutionErrorTextClipped(t *testing.T) {
	b, _ := json.Marshal(errorContent{Name: "E", Value: strings.Repeat("v", 1<<20), Traceback: []string{"tb"}})
	ex := newExecution(100)
	feed(t, ex, fixture{"error", string(b)}, fxReplyError2, fxIdle)
	r := ex.result()
	if r.Error == nil || len(r.Error.Value) > 64<<10+len(truncatedMarkerWant) || !strings.HasSuffix(r.Error.Value, truncatedMarkerWant) || !r.Truncated {
		t.Errorf("error value of %d bytes, truncated %v", len(r.Error.Value), r.Truncated)
	}
}

// An execution counts as started once the kernel reports busy for it, or
// once it ended without ever starting.
func TestExecutionStarted(t *testing.T) {
	started := func(ex *execution) bool {
		select {
		case <-ex.started:
			return true
		default:
			return false
		}
	}
	ex := newExecution(0)
	if started(ex) {
		t.Fatal("started before any message")
	}
	feed(t, ex, fxIdle)
	if started(ex) {
		t.Fatal("idle counted as a start")
	}
	feed(t, ex, fxBusy)
	if !started(ex) {
		t.Fatal("busy did not start it")
	}
	feed(t, ex, fxBusy) // a second busy must not close twice

	ex = newExecution(0)
	ex.fail(&Error{Name: ErrKernelDied})
	if !started(ex) {
		t.Error("a failed execution still blocks waiters on its start")
	}
}

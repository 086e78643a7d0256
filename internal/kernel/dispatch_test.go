package kernel

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// newDispatchKernel returns a Kernel with no websocket, enough for dispatch.
func newDispatchKernel() *Kernel {
	return &Kernel{pending: map[string]handler{}, opts: Options{Log: slog.New(slog.DiscardHandler)}}
}

// dispatch hands k the fixtures as messages answering parent.
func dispatch(tb testing.TB, k *Kernel, parent string, fs ...fixture) {
	tb.Helper()
	for _, m := range messages(tb, parent, fs...) {
		k.dispatch(m)
	}
}

func TestDispatchRoutesByParent(t *testing.T) {
	k := newDispatchKernel()
	a, b := newExecution(0), newExecution(0)
	k.pending[fxParentA] = a
	k.pending[fxParentB] = b

	nameError := fixture{"error", `{"ename": "NameError", "evalue": "name 'undefined_name' is not defined", "traceback": [
		"\u001b[0;31m---------------------------------------------------------------------------\u001b[0m",
		"\u001b[0;31mNameError\u001b[0m                                 Traceback (most recent call last)",
		"Cell \u001b[0;32mIn[2], line 1\u001b[0m\n\u001b[0;32m----> 1\u001b[0m \u001b[43mundefined_name\u001b[49m\n",
		"\u001b[0;31mNameError\u001b[0m: name 'undefined_name' is not defined"]}`}
	const nameErrorTraceback = "---------------------------------------------------------------------------\n" +
		"NameError                                 Traceback (most recent call last)\n" +
		"Cell In[2], line 1\n" +
		"----> 1 undefined_name\n" +
		"\n" +
		"NameError: name 'undefined_name' is not defined"

	dispatch(t, k, fxParentA, fxBusy, fxInput)
	dispatch(t, k, fxParentB, fxBusy, fixture{"execute_input", `{"code": "print('from B')\nundefined_name", "execution_count": 2}`})
	dispatch(t, k, fxParentA, fxStream("stdout", "from A\n"))
	dispatch(t, k, fxParentB, fxStream("stdout", "from B\n"), fxStream("stderr", "warning from B\n"))
	dispatch(t, k, fxParentA, fxResult2)
	dispatch(t, k, fxParentB, fxPNG, nameError)
	dispatch(t, k, fxParentA, fxIdle)
	// B's reply must not complete A, which already has its idle.
	dispatch(t, k, fxParentB, fixture{"execute_reply", `{"status": "error", "execution_count": 2, "ename": "NameError", "evalue": "name 'undefined_name' is not defined", "traceback": []}`})
	if isDone(a) || isDone(b) {
		t.Fatalf("after B's reply: a done = %v, b done = %v; want neither", isDone(a), isDone(b))
	}
	dispatch(t, k, fxParentB, fxIdle)
	if isDone(a) || !isDone(b) {
		t.Fatalf("after B's idle: a done = %v, b done = %v; want only b", isDone(a), isDone(b))
	}
	dispatch(t, k, fxParentA, fxReplyOK1)
	if !isDone(a) {
		t.Fatal("a not done after its reply")
	}

	t.Run("A", func(t *testing.T) {
		checkResult(t, a.result(), Result{
			Stdout:         "from A\n",
			Status:         "ok",
			ExecutionCount: intPtr(1),
			Outputs: []Output{{
				Type:     "execute_result",
				Data:     map[string]json.RawMessage{"text/plain": json.RawMessage(`"2"`)},
				Metadata: json.RawMessage(`{}`),
			}},
		})
	})
	t.Run("B", func(t *testing.T) {
		checkResult(t, b.result(), Result{
			Stdout:         "from B\n",
			Stderr:         "warning from B\n" + nameErrorTraceback + "\n",
			Status:         "error",
			ExecutionCount: intPtr(2),
			Error:          &Error{Name: "NameError", Value: "name 'undefined_name' is not defined", Traceback: nameErrorTraceback},
			Outputs: []Output{{
				Type: "display_data",
				Data: map[string]json.RawMessage{
					"image/png":  json.RawMessage(`"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==\n"`),
					"text/plain": json.RawMessage(`"<Figure size 640x480 with 1 Axes>"`),
				},
				Metadata: json.RawMessage(`{"image/png": {"width": 1, "height": 1}}`),
			}},
		})
	})
}

func TestDispatchKernelDied(t *testing.T) {
	tests := []struct {
		state     string
		wantValue string // a phrase the error's value must contain
		restarted bool   // whether a new kernel took over
	}{
		{"restarting", "was restarted", true},
		{"dead", "could not be restarted", false},
	}
	for _, tt := range tests {
		t.Run(tt.state, func(t *testing.T) {
			k := newDispatchKernel()
			restarts := 0
			k.opts.OnRestart = func() { restarts++ }
			a, b := newExecution(0), newExecution(0)
			k.pending[fxParentA] = a
			k.pending[fxParentB] = b
			// A handler that is not an execution is left alone.
			info := &infoWaiter{done: make(chan struct{})}
			k.pending["c7d8e9f0-1a2b-4c3d-8e4f-5a6b7c8d9e0f"] = info

			dispatch(t, k, fxParentA, fxBusy, fxStream("stdout", "partial A\n"))
			dispatch(t, k, fxParentB, fxStream("stderr", "partial B\n"))
			dispatch(t, k, "", fixture{"status", `{"execution_state": "` + tt.state + `"}`})

			for name, ex := range map[string]*execution{"A": a, "B": b} {
				if !isDone(ex) {
					t.Fatalf("%s not done", name)
				}
				r := ex.result()
				if r.Error == nil || r.Error.Name != "KernelDied" || !strings.Contains(r.Error.Value, tt.wantValue) {
					t.Errorf("%s: Error = %+v, want KernelDied containing %q", name, r.Error, tt.wantValue)
				}
				if r.Restarted != tt.restarted {
					t.Errorf("%s: Restarted = %v, want %v", name, r.Restarted, tt.restarted)
				}
			}
			wantRestarts := 0
			if tt.restarted {
				wantRestarts = 1
			}
			if restarts != wantRestarts {
				t.Errorf("OnRestart called %d times, want %d", restarts, wantRestarts)
			}
			if got := a.result().Stdout; got != "partial A\n" {
				t.Errorf("A: Stdout = %q, want the output collected before the death", got)
			}
			if got := b.result().Stderr; got != "partial B\n" {
				t.Errorf("B: Stderr = %q, want the output collected before the death", got)
			}

			// What the restarted kernel may still send changes nothing.
			dispatch(t, k, fxParentA, fxReplyOK1, fxIdle)
			if r := a.result(); r.Error == nil || r.Error.Name != "KernelDied" || r.Status != "" {
				t.Errorf("A after a late reply: Error = %+v, Status = %q", r.Error, r.Status)
			}
		})
	}
}

// TestDispatchRestartingFixture feeds the status message jupyter_server sends
// when it restarts a dead kernel, as it comes off the wire.
func TestDispatchRestartingFixture(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "status_restarting.json"))
	if err != nil {
		t.Fatal(err)
	}
	k := newDispatchKernel()
	ex := newExecution(0)
	k.pending[fxParentA] = ex
	k.dispatch(decodeMessage(t, data))
	if !isDone(ex) {
		t.Fatal("execution not failed by the restarting status")
	}
	if r := ex.result(); r.Error == nil || r.Error.Name != "KernelDied" {
		t.Errorf("Error = %+v, want KernelDied", r.Error)
	}
}

func TestDispatchIgnores(t *testing.T) {
	const unknown = "ffffffff-0000-4000-8000-000000000000"
	tests := []struct {
		name   string
		parent string
		msgs   []fixture
	}{
		{"parentless busy and idle", "", []fixture{fxBusy, fxIdle}},
		{"parentless starting", "", []fixture{fxStarting}},
		{"parentless non-status", "", []fixture{fxStream("stdout", "stray\n"), fxReplyOK1}},
		{"unknown parent", unknown, []fixture{fxBusy, fxStream("stdout", "other\n"), fxZeroDivision, fxReplyOK1, fxIdle}},
		{"unknown parent restarting", unknown, []fixture{{"status", `{"execution_state": "restarting"}`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newDispatchKernel()
			k.opts.OnRestart = func() { t.Error("OnRestart called") }
			ex := newExecution(0)
			k.pending[fxParentA] = ex
			dispatch(t, k, fxParentA, fxBusy, fxStream("stdout", "mine\n"))

			dispatch(t, k, tt.parent, tt.msgs...)

			if isDone(ex) {
				t.Error("execution finished by a message that was not its own")
			}
			checkResult(t, ex.result(), Result{Stdout: "mine\n"})
			if len(k.pending) != 1 {
				t.Errorf("pending has %d entries, want 1", len(k.pending))
			}
		})
	}

	t.Run("nothing pending", func(t *testing.T) {
		k := newDispatchKernel()
		dispatch(t, k, unknown, fxStdout1, fxReplyOK1, fxIdle)
		dispatch(t, k, "", fixture{"status", `{"execution_state": "dead"}`})
	})
}

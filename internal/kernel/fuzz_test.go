package kernel

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/sandboxd/sandboxd/internal/bound"
)

// Whatever a kernel sends, decoding and dispatching it must not panic, and
// what an execution keeps of its output stays within the cap and valid
// UTF-8 where the kernel sent valid UTF-8.
func FuzzDispatch(f *testing.F) {
	for _, fx := range []fixture{fxBusy, fxIdle, fxInput, fxStdout1, fxReplyOK1, fxAborted, fxResult2, fxPNG, fxZeroDivision, fxReplyError2} {
		f.Add(wireMessage(fxParentA, fx))
	}
	f.Add(wireMessage("", fixture{"status", `{"execution_state": "restarting"}`}))
	f.Add([]byte(`{"header":{},"parent_header":{"msg_id":"` + fxParentA + `"},"content":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m Message
		if json.Unmarshal(data, &m) != nil {
			return
		}
		k := newDispatchKernel()
		ex := newExecution(64)
		k.pending[fxParentA] = ex
		k.dispatch(&m)
		k.dispatch(&m)
		res := ex.result()
		for _, s := range []string{res.Stdout, res.Stderr} {
			if len(s) > 64+len(bound.Marker) {
				t.Errorf("kept %d bytes over a cap of 64", len(s))
			}
		}
		if utf8.Valid(data) && !utf8.ValidString(res.Stdout) {
			t.Errorf("stdout %q is not valid UTF-8", res.Stdout)
		}
	})
}

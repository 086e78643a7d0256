package kernel

import (
	"encoding/json"
	"testing"
)

// BenchmarkExecutionHandle collects what print(1) sends.
func BenchmarkExecutionHandle(b *testing.B) {
	ms := messages(b, fxParentA, fxBusy, fxInput, fxStdout1, fxReplyOK1, fxIdle)
	b.ReportAllocs()
	for b.Loop() {
		ex := newExecution(1 << 20)
		for _, m := range ms {
			ex.handle(m)
		}
		if !isDone(ex) {
			b.Fatal("execution not done")
		}
	}
}

// BenchmarkDecodeMessage decodes one stream message as Kernel.read does.
func BenchmarkDecodeMessage(b *testing.B) {
	data := wireMessage(fxParentA, fxStream("stdout", "1\n"))
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var m Message
		if err := json.Unmarshal(data, &m); err != nil {
			b.Fatal(err)
		}
	}
}

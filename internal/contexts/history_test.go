package contexts

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sandboxd/sandboxd/internal/kernel"
)

func ids(entries []Entry) []int64 {
	var out []int64
	for _, e := range entries {
		out = append(out, e.ID)
	}
	return out
}

func TestHistoryKeepsTheNewestEntries(t *testing.T) {
	h := newHistory(3, 1<<20, "")
	for i := range 5 {
		h.add(Entry{Kind: KindExecution, Code: strings.Repeat("x", i)})
	}
	p := h.page(0, 50)
	if got := ids(p.Entries); len(got) != 3 || got[0] != 3 || got[2] != 5 {
		t.Fatalf("ids = %v, want [3 4 5]", got)
	}
	if p.Dropped != 2 || p.NextBefore != 0 {
		t.Fatalf("dropped %d, next_before %d; want 2 and 0", p.Dropped, p.NextBefore)
	}
}

func TestHistoryBoundsBytes(t *testing.T) {
	h := newHistory(100, 1000, "")
	for range 10 {
		h.add(Entry{Kind: KindCommand, Command: "echo", Stdout: strings.Repeat("a", 300)})
	}
	p := h.page(0, 50)
	if len(p.Entries) != 3 || p.Dropped != 7 || h.bytes > 1000 {
		t.Fatalf("%d entries, %d dropped, %d bytes; want 3, 7, at most 1000", len(p.Entries), p.Dropped, h.bytes)
	}
	for _, e := range p.Entries {
		if e.Truncated {
			t.Fatalf("entry %d truncated, though it fits", e.ID)
		}
	}
}

func TestHistoryCutsAHugeEntry(t *testing.T) {
	h := newHistory(10, 1000, "")
	h.add(Entry{Kind: KindExecution, Code: "small"})
	big := h.add(Entry{
		Kind:    KindExecution,
		Code:    "print('é' * 10**6)",
		Stdout:  strings.Repeat("é", 5000),
		Outputs: []kernel.Output{{Type: "display_data", Data: map[string]json.RawMessage{"text/plain": json.RawMessage(`"` + strings.Repeat("b", 4000) + `"`)}}, {Type: "display_data", Data: map[string]json.RawMessage{"text/plain": json.RawMessage(`"small"`)}}},
		Error:   &kernel.Error{Name: "ValueError", Value: "v", Traceback: strings.Repeat("t", 3000)},
	})
	if !big.Truncated || big.size() > 1000 {
		t.Fatalf("truncated %v, %d bytes; want true and at most 1000", big.Truncated, big.size())
	}
	if !utf8.ValidString(big.Stdout) || big.Code != "print('é' * 10**6)" || big.Error.Name != "ValueError" {
		t.Fatalf("cut badly: stdout valid %v, code %q, error %q", utf8.ValidString(big.Stdout), big.Code, big.Error.Name)
	}
	// Results go before texts are cut, the largest first.
	img := h.add(Entry{
		Kind:    KindExecution,
		Outputs: []kernel.Output{{Type: "display_data", Data: map[string]json.RawMessage{"text/plain": json.RawMessage(`"` + strings.Repeat("b", 4000) + `"`)}}, {Type: "display_data", Data: map[string]json.RawMessage{"text/plain": json.RawMessage(`"small"`)}}},
		Stdout:  "hello",
	})
	if !img.Truncated || len(img.Outputs) != 1 || string(img.Outputs[0].Data["text/plain"]) != `"small"` || img.Stdout != "hello" {
		t.Fatalf("outputs = %v, stdout %q; want only the small one, and hello", img.Outputs, img.Stdout)
	}
	p := h.page(0, 50)
	if got := ids(p.Entries); len(got) != 1 || got[0] != 3 || p.Dropped != 2 {
		t.Fatalf("ids %v, dropped %d; want [3] and 2", got, p.Dropped)
	}
}

func TestHistoryPages(t *testing.T) {
	h := newHistory(100, 1<<20, "")
	for range 12 {
		h.add(Entry{Kind: KindExecution, Code: "1"})
	}
	var all []int64
	before := int64(0)
	for {
		p := h.page(before, 5)
		all = append(ids(p.Entries), all...)
		if p.NextBefore == 0 {
			break
		}
		before = p.NextBefore
	}
	if len(all) != 12 || all[0] != 1 || all[11] != 12 {
		t.Fatalf("paged ids = %v, want 1..12", all)
	}
	if p := h.page(8, 3); len(p.Entries) != 3 || p.Entries[0].ID != 5 || p.NextBefore != 5 {
		t.Fatalf("page before 8 = %v next %d, want [5 6 7] next 5", ids(p.Entries), p.NextBefore)
	}
	if p := h.page(1, 3); len(p.Entries) != 0 || p.NextBefore != 0 {
		t.Fatalf("page before 1 = %v next %d, want none", ids(p.Entries), p.NextBefore)
	}
}

func TestHistoryFileStaysBoundedAndReloads(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ctx-x.history.jsonl")
	const maxBytes = 10 << 10
	h := newHistory(20, maxBytes, file)
	for range 1000 {
		h.add(Entry{Kind: KindCommand, Command: "echo", Stdout: strings.Repeat("z", 500)})
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 3*maxBytes {
		t.Fatalf("history file is %d bytes, want at most about twice %d", fi.Size(), maxBytes)
	}
	// A line cut short, as by a crash while writing it.
	f, _ := os.OpenFile(file, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"id":1001,"kind":"comm`)
	f.Close()

	again := newHistory(20, maxBytes, file)
	if err := again.load(); err == nil {
		t.Fatal("a broken line was read without error")
	}
	want, got := h.page(0, 50), again.page(0, 50)
	if len(got.Entries) != len(want.Entries) || got.Entries[0].ID != want.Entries[0].ID || got.Dropped != 1000-int64(len(want.Entries)) {
		t.Fatalf("reloaded ids %v dropped %d, want %v dropped %d", ids(got.Entries), got.Dropped, ids(want.Entries), want.Dropped)
	}
	if e := again.add(Entry{Kind: KindExecution, Code: "1"}); e.ID != 1001 {
		t.Fatalf("next id after reload = %d, want 1001", e.ID)
	}
	third := newHistory(20, maxBytes, file)
	if err := third.load(); err != nil {
		t.Fatalf("reload after the broken line was rewritten: %v", err)
	}
	if p := third.page(0, 1); p.Entries[0].ID != 1001 {
		t.Fatalf("last id = %d, want 1001", p.Entries[0].ID)
	}
}

// TestHistoryMemoryIsFlat records 10,000 entries of 64 KiB each (625 MiB
// in all) into one history bounded at 4 MiB, and checks both what the
// history counts and what the heap holds after it.
func TestHistoryMemoryIsFlat(t *testing.T) {
	const maxBytes = 4 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	h := newHistory(200, maxBytes, "")
	for i := range 10000 {
		out := strings.Repeat(string(rune('a'+i%26)), 64<<10)
		h.add(Entry{Kind: KindExecution, Code: "print('x' * 65536)", Stdout: out, Outputs: []kernel.Output{{Type: "display_data", Data: map[string]json.RawMessage{"text/plain": json.RawMessage(`"r"`)}}}})
		if h.bytes > maxBytes {
			t.Fatalf("after %d entries the history holds %d bytes, more than %d", i+1, h.bytes, maxBytes)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("10000 entries of 64 KiB: history holds %d entries, %d bytes; heap grew by %d bytes", len(h.entries), h.bytes, grew)
	if grew > 3*maxBytes {
		t.Fatalf("heap grew by %d bytes, want at most %d", grew, 3*maxBytes)
	}
	runtime.KeepAlive(h)
}

func TestBrokerDropsASlowSubscriber(t *testing.T) {
	var b broker
	slow, _ := b.subscribe()
	fast, stop := b.subscribe()
	defer stop()
	for i := range subscriberQueue + 1 {
		b.publish(Event{Type: EventContextDeleted, ContextID: string(rune('a' + i%26))})
		<-fast
	}
	n := 0
	for range slow {
		n++
	}
	if n != subscriberQueue {
		t.Fatalf("slow subscriber got %d events before its stream ended, want %d", n, subscriberQueue)
	}
	b.publish(Event{Type: EventContextDeleted})
	if _, ok := <-fast; !ok {
		t.Fatal("the subscriber that kept up was dropped")
	}
	b.close()
	if _, ok := <-fast; ok {
		t.Fatal("close left a subscription open")
	}
}

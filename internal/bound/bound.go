// Package bound keeps what the daemon holds of a process's or a kernel's
// output within limits: a budget several outputs share, text kept as
// valid UTF-8 and marked where it was cut, a buffer of a stream's first
// bytes, and the head of a stream that starts with one. One marker ends
// every text cut, whichever way it came in.
package bound

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"
)

// Marker ends text that was cut at its limit.
const Marker = "\n[output truncated]\n"

// Prefix returns the longest prefix of s of at most n bytes that does not
// end inside a rune, so that the prefix of valid UTF-8 stays valid.
func Prefix(s string, n int) string {
	if n >= len(s) {
		return s
	}
	n = max(n, 0)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Budget counts the bytes kept of several outputs against one limit for
// all of them. The first output that does not fit whole is cut (text) or
// dropped (a whole-or-nothing output), and so is everything after it, so
// that what is kept is a prefix of what was sent.
type Budget struct {
	limit    int // <= 0: no limit
	used     int
	exceeded bool
}

// NewBudget returns a budget of limit bytes; a limit <= 0 keeps all.
func NewBudget(limit int) *Budget { return &Budget{limit: limit} }

// Exceeded reports whether an output went past the limit: nothing more is
// kept.
func (b *Budget) Exceeded() bool { return b.exceeded }

// Reserve takes n bytes for an output kept whole or not at all. cutNow is
// true when this is the output that went past the limit.
func (b *Budget) Reserve(n int) (ok, cutNow bool) {
	if b.exceeded {
		return false, false
	}
	if b.limit > 0 && n > b.limit-b.used {
		b.exceeded = true
		return false, true
	}
	b.used += n
	return true, false
}

// Fit takes what of s fits, cut on a rune boundary. cutNow is true when s
// is the output that went past the limit.
func (b *Budget) Fit(s string) (kept string, cutNow bool) {
	if b.exceeded {
		return "", false
	}
	if b.limit <= 0 || len(s) <= b.limit-b.used {
		b.used += len(s)
		return s, false
	}
	kept = Prefix(s, b.limit-b.used)
	b.used += len(kept)
	b.exceeded = true
	return kept, true
}

// Text keeps text under a budget, valid UTF-8 and ended by Marker where
// the budget ran out on it. Written bytes are decoded without ever
// splitting a rune: an incomplete sequence at the end of a write waits for
// the next one, and bytes that cannot be UTF-8 become U+FFFD, one for each.
type Text struct {
	budget  *Budget
	emit    func(text string)
	b       strings.Builder
	pending []byte // the start of a rune split across writes
	cut     bool
}

// NewText returns a Text kept under budget, which other outputs may share.
// emit, when not nil, is called with each piece of text kept, as it is.
func NewText(budget *Budget, emit func(text string)) *Text {
	return &Text{budget: budget, emit: emit}
}

// Write never fails, so that a process's output keeps draining past the
// limit and the process is not blocked on a full pipe.
func (t *Text) Write(p []byte) (int, error) {
	n := len(p)
	if t.budget.Exceeded() {
		return n, nil
	}
	if len(t.pending) > 0 {
		p = append(t.pending, p...)
		t.pending = nil
	}
	var text strings.Builder
	for len(p) > 0 {
		r, size := utf8.DecodeRune(p)
		if r == utf8.RuneError && size <= 1 {
			if !utf8.FullRune(p) {
				t.pending = append([]byte(nil), p...)
				break
			}
			text.WriteRune(utf8.RuneError)
			p = p[1:]
			continue
		}
		text.Write(p[:size])
		p = p[size:]
	}
	t.Add(text.String())
	return n, nil
}

// Close flushes a rune left incomplete at the end of the stream.
func (t *Text) Close() {
	if len(t.pending) > 0 {
		t.Add(strings.Repeat(string(utf8.RuneError), len(t.pending)))
	}
	t.pending = nil
}

// Add appends what of s, valid UTF-8, fits the budget, and Marker where s
// was cut. It returns what it appended.
func (t *Text) Add(s string) string {
	if s == "" {
		return ""
	}
	kept, cutNow := t.budget.Fit(s)
	if cutNow {
		kept += Marker
		t.cut = true
	}
	t.append(kept)
	return kept
}

// Mark appends Marker, which the budget does not count: for output cut
// elsewhere under the same budget, such as a whole-or-nothing output that
// did not fit.
func (t *Text) Mark() { t.append(Marker) }

func (t *Text) append(s string) {
	if s == "" {
		return
	}
	t.b.WriteString(s)
	if t.emit != nil {
		t.emit(s)
	}
}

// Truncated reports whether text added to t was cut.
func (t *Text) Truncated() bool { return t.cut }

func (t *Text) String() string { return t.b.String() }

// Buffer keeps the first bytes written to it, up to its size, and drops
// the rest, so that a process cannot make the daemon hold more. It is
// safe for concurrent use.
type Buffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	size int
	cut  bool
}

// NewBuffer returns a Buffer that keeps size bytes.
func NewBuffer(size int) *Buffer { return &Buffer{size: size} }

// Write never fails, so that a process's output keeps draining.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.size - b.buf.Len(); len(p) > room {
		b.buf.Write(p[:max(room, 0)])
		b.cut = true
		return len(p), nil
	}
	b.buf.Write(p)
	return len(p), nil
}

// Truncated reports whether bytes were dropped.
func (b *Buffer) Truncated() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cut
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// HeadWriter splits a stream that begins with a head ended by a NUL, as
// the output of the processes the daemon runs in containers does (a pid, a
// file's description): it keeps the head, at most Max bytes, and writes
// the rest to W.
type HeadWriter struct {
	W   io.Writer
	Max int
	// OnHead, when set, is called with the head once it is whole.
	OnHead func(head []byte)
	buf    []byte
	seen   bool
}

// Write fails when the head grows past Max bytes.
func (h *HeadWriter) Write(p []byte) (int, error) {
	if h.seen {
		return h.W.Write(p)
	}
	n := len(p)
	i := bytes.IndexByte(p, 0)
	if i < 0 {
		i = len(p)
	}
	if len(h.buf)+i > h.Max {
		return 0, fmt.Errorf("the output did not start with a head of at most %d bytes", h.Max)
	}
	h.buf = append(h.buf, p[:i]...)
	if i == len(p) {
		return n, nil
	}
	h.seen = true
	if h.OnHead != nil {
		h.OnHead(h.buf)
	}
	if rest := p[i+1:]; len(rest) > 0 {
		if _, err := h.W.Write(rest); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// Head returns the head, and whether it has come whole.
func (h *HeadWriter) Head() ([]byte, bool) { return h.buf, h.seen }

package contexts

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// ExecSpec is a process to run in a context's container with Runtime.Exec.
type ExecSpec struct {
	Cmd []string
	// Env is added to the container's own environment, as NAME=value.
	Env []string
	// Dir is the process's working directory; "" is the image's.
	Dir string
	// User is uid:gid; "" is the image's user.
	User string
	// Stdin, when not nil, is copied to the process's standard input, which
	// is closed at its end.
	Stdin io.Reader
	// Stdout and Stderr receive the process's output; nil discards it.
	Stdout, Stderr io.Writer
}

// ContextUser is the uid:gid every process of a context runs as, as the
// images' USER says: files and commands run with the kernel's rights, so
// what one writes the other can read.
const ContextUser = "61000:61000"

// truncatedMarker ends a stream cut at the output cap, as the kernel
// package marks executions'.
const truncatedMarker = "\n[output truncated]\n"

// textCapture turns a stream of bytes into valid UTF-8 text, keeps the
// first limit bytes of it and reports each piece kept to emit. It never
// splits a rune: an incomplete sequence at the end of a write waits for
// the next one, and bytes that cannot be UTF-8 become U+FFFD, one for each.
type textCapture struct {
	limit   int // bytes of text kept; <= 0 keeps all
	emit    func(text string)
	b       strings.Builder
	pending []byte // the start of a rune split across writes
	cut     bool
}

// Write never fails, so that the process's output keeps draining after the
// cap and the process is not blocked on a full pipe.
func (c *textCapture) Write(p []byte) (int, error) {
	n := len(p)
	if c.cut {
		return n, nil
	}
	if len(c.pending) > 0 {
		p = append(c.pending, p...)
		c.pending = nil
	}
	var text strings.Builder
	for len(p) > 0 {
		r, size := utf8.DecodeRune(p)
		if r == utf8.RuneError && size <= 1 {
			if !utf8.FullRune(p) {
				c.pending = append([]byte(nil), p...)
				break
			}
			text.WriteRune(utf8.RuneError)
			p = p[1:]
			continue
		}
		text.Write(p[:size])
		p = p[size:]
	}
	c.add(text.String())
	return n, nil
}

// close flushes a rune left incomplete at the end of the stream.
func (c *textCapture) close() {
	if len(c.pending) > 0 && !c.cut {
		c.add(strings.Repeat(string(utf8.RuneError), len(c.pending)))
	}
	c.pending = nil
}

func (c *textCapture) add(text string) {
	if text == "" || c.cut {
		return
	}
	if room := c.limit - c.b.Len(); c.limit > 0 && len(text) > room {
		// Cut on a rune boundary so the kept text stays valid UTF-8.
		for room > 0 && !utf8.RuneStart(text[room]) {
			room--
		}
		text = text[:room] + truncatedMarker
		c.cut = true
	}
	c.b.WriteString(text)
	if c.emit != nil {
		c.emit(text)
	}
}

func (c *textCapture) String() string { return c.b.String() }

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

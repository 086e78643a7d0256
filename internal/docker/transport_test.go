package docker

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// frame is one chunk of an exec's output as the engine sends it.
func frame(stream byte, s string) []byte {
	h := make([]byte, 8, 8+len(s))
	h[0] = stream
	binary.BigEndian.PutUint32(h[4:], uint32(len(s)))
	return append(h, s...)
}

// An execConn reads stdout only, across chunk boundaries and however the
// bytes arrive, and keeps the end of stderr for error messages.
func TestExecConnReadsStdout(t *testing.T) {
	var stream bytes.Buffer
	stream.Write(frame(1, "+hello "))
	stream.Write(frame(2, "a warning\n"))
	stream.Write(frame(1, ""))
	stream.Write(frame(1, "world"))
	stream.Write(frame(2, strings.Repeat("e", 2000)))
	stream.Write(frame(1, "!"))
	for name, r := range map[string]io.Reader{
		"whole":        bytes.NewReader(stream.Bytes()),
		"byte by byte": iotest.OneByteReader(bytes.NewReader(stream.Bytes())),
	} {
		t.Run(name, func(t *testing.T) {
			c := &execConn{Conn: nil, r: bufio.NewReader(r)}
			got, err := io.ReadAll(iotest.OneByteReader(c))
			if err != nil || string(got) != "+hello world!" {
				t.Errorf("read %q, %v", got, err)
			}
			if e := c.stderr(); len(e) != 1024 || strings.Trim(e, "e") != "" {
				t.Errorf("stderr kept: %d bytes %q…", len(e), e[:min(len(e), 20)])
			}
		})
	}
}

// A stream cut inside a header or a chunk is an error, not a short read
// taken for the end.
func TestExecConnCutStream(t *testing.T) {
	whole := append(frame(1, "abc"), frame(1, "def")...)
	for _, n := range []int{4, 10, 12} {
		c := &execConn{r: bufio.NewReader(bytes.NewReader(whole[:n]))}
		if got, err := io.ReadAll(c); err != io.ErrUnexpectedEOF {
			t.Errorf("cut at %d: read %q, %v; want %v", n, got, err, io.ErrUnexpectedEOF)
		}
	}
	c := &execConn{r: bufio.NewReader(bytes.NewReader(whole))}
	if got, err := io.ReadAll(c); err != nil || string(got) != "abcdef" {
		t.Errorf("whole: read %q, %v", got, err)
	}
}

package relay

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// start runs the relay to target here, as an exec would in a context.
func start(t *testing.T, target string) (stdin io.WriteCloser, stdout *bufio.Reader, cmd *exec.Cmd, stderr *bytes.Buffer) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3 here")
	}
	args := Command(target)
	cmd = exec.Command(args[0], args[1:]...)
	stderr = new(bytes.Buffer)
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return stdin, bufio.NewReader(out), cmd, stderr
}

// echoOnce accepts one connection and answers what it reads with the
// same upper-cased, and never closes it first, as a Jupyter server keeps
// a websocket open.
func echoOnce(t *testing.T, l net.Listener) {
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		l.Close()
	})
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 1024)
		for {
			n, err := c.Read(b)
			if err != nil {
				<-done
				return
			}
			c.Write(bytes.ToUpper(b[:n]))
		}
	}()
}

// The relay reaches a unix socket or host:port, says so with one byte,
// then carries both ways, and ends when its stdin does, whatever the
// server does.
func TestRelayCarries(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unixPath := filepath.Join(t.TempDir(), "s")
	unix, err := net.Listen("unix", unixPath)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		l      net.Listener
		target string
	}{
		"tcp":  {tcp, tcp.Addr().String()},
		"unix": {unix, unixPath},
	} {
		t.Run(name, func(t *testing.T) {
			echoOnce(t, tc.l)
			stdin, stdout, cmd, stderr := start(t, tc.target)
			if b, err := stdout.ReadByte(); err != nil || b != Connected {
				t.Fatalf("first byte %q, %v; want %q (stderr %q)", b, err, Connected, stderr)
			}
			io.WriteString(stdin, "hello relay")
			got := make([]byte, len("HELLO RELAY"))
			if _, err := io.ReadFull(stdout, got); err != nil || string(got) != "HELLO RELAY" {
				t.Errorf("read %q, %v", got, err)
			}
			stdin.Close()
			if rest, err := io.ReadAll(stdout); err != nil || len(rest) != 0 {
				t.Errorf("after stdin's end: %q, %v", rest, err)
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("relay: %v (stderr %q)", err, stderr)
			}
		})
	}
}

// A relay that cannot connect writes nothing to stdout, and says why.
func TestRelayRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for _, target := range []string{addr, filepath.Join(t.TempDir(), "none"), "no-port"} {
		_, stdout, cmd, stderr := start(t, target)
		got, _ := io.ReadAll(stdout)
		err := cmd.Wait()
		if len(got) != 0 || err == nil || !strings.Contains(stderr.String(), "connect "+target) {
			t.Errorf("%s: stdout %q, exit %v, stderr %q", target, got, err, stderr)
		}
	}
}

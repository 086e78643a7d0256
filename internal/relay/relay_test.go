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

// echoOnce accepts one connection, answers what it reads until the
// client's half-close with the same upper-cased, then closes.
func echoOnce(t *testing.T, l net.Listener) {
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		c.Write(bytes.ToUpper(b))
	}()
}

// The relay reaches a unix socket or host:port, says so with one byte,
// then carries both ways, passing the client's end on as a half-close.
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
			io.WriteString(stdin, "hello ")
			io.WriteString(stdin, "relay")
			stdin.Close()
			got, err := io.ReadAll(stdout)
			if err != nil || string(got) != "HELLO RELAY" {
				t.Errorf("read %q, %v", got, err)
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

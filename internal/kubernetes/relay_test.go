package kubernetes

import (
	"bytes"
	"context"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/remotecommand"

	"github.com/sandboxd/sandboxd/internal/relay"
)

// localExecutor runs the relay here, with the streams an exec would give
// it in the pod. Like client-go's, it does not wait for stdin to end.
type localExecutor struct{ target string }

func (e localExecutor) Stream(o remotecommand.StreamOptions) error {
	return e.StreamWithContext(context.Background(), o)
}

func (e localExecutor) StreamWithContext(ctx context.Context, o remotecommand.StreamOptions) error {
	args := relay.Command(e.target)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = o.Stdout, o.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() {
		io.Copy(stdin, o.Stdin)
		stdin.Close()
	}()
	return cmd.Wait()
}

// quietExecutor starts an exec that never says a word, until it is
// cancelled.
type quietExecutor struct{}

func (quietExecutor) Stream(remotecommand.StreamOptions) error { return nil }

func (quietExecutor) StreamWithContext(ctx context.Context, _ remotecommand.StreamOptions) error {
	<-ctx.Done()
	return ctx.Err()
}

func needPython(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3 here")
	}
}

// A relayed connection carries both ways, and closing it ends the exec,
// which ends the server's connection.
func TestDialRelayCarriesAndCloses(t *testing.T) {
	needPython(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	serverDone := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			serverDone <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 64)
		for {
			n, err := c.Read(buf)
			if err != nil {
				serverDone <- err
				return
			}
			c.Write(bytes.ToUpper(buf[:n]))
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := dialRelay(ctx, localExecutor{l.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"hello", "relay"} {
		if _, err := io.WriteString(c, s); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got := make([]byte, len(s))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != strings.ToUpper(s) {
			t.Fatalf("read %q, %v", got, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	select {
	case err := <-serverDone:
		if err != io.EOF {
			t.Errorf("server read %v after close, want EOF", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the server's connection outlived the relayed one")
	}
}

// When the server ends the connection, the relayed one reads its end.
func TestDialRelayServerCloses(t *testing.T) {
	needPython(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Write([]byte("bye"))
			c.Close()
		}
	}()
	c, err := dialRelay(context.Background(), localExecutor{l.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got, err := io.ReadAll(c); err != nil || string(got) != "bye" {
		t.Errorf("read %q, %v", got, err)
	}
}

// A refused connection fails the dial with the relay's reason.
func TestDialRelayRefused(t *testing.T) {
	needPython(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := dialRelay(context.Background(), localExecutor{addr})
	if err == nil {
		c.Close()
		t.Fatal("dial succeeded")
	}
	if !strings.Contains(err.Error(), "connect "+addr) {
		t.Errorf("error %q does not say why", err)
	}
}

// A relay that never says it connected fails the dial when ctx ends, and
// its exec is ended.
func TestDialRelayQuiet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := dialRelay(ctx, quietExecutor{})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "did not connect") {
			t.Errorf("dial: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("dial did not return after its ctx ended")
	}
}

package main

import (
	"bytes"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// With --runtime runsc, code runs on gVisor's kernel instead of the host's,
// and the rest works as with runc: state between executions, the hostile
// attempts failing, files, networking through the egress proxy.
func TestGVisor(t *testing.T) {
	testenv.RequireGVisor(t)
	d := startDaemon(t, append(hostileArgs(t), "--runtime", "runsc", "--pool", "python=0", "--allow-egress")...)
	id := d.create(t)

	var host syscall.Utsname
	if err := syscall.Uname(&host); err != nil {
		t.Fatal(err)
	}
	hostRelease := utsString(host.Release[:])
	e := d.execute(t, id, "import os\nx = 41\nprint(os.uname().release)", 60)
	if release := strings.TrimSpace(e.Output.Stdout); release == "" || release == hostRelease {
		t.Fatalf("the kernel's release is %q, the host's %q: not running in gVisor (%+v)", release, hostRelease, e)
	}
	if e := d.execute(t, id, "print(x + 1)", 30); e.Output.Stdout != "42\n" {
		t.Errorf("state between executions: %+v", e)
	}

	for _, tt := range hostileAttempts {
		t.Run(tt.name, func(t *testing.T) {
			e := d.execute(t, id, tt.code, 60)
			if want := gvisorWant(tt.name, tt.want); !want.MatchString(e.Output.Stdout) {
				t.Errorf("stdout %q (stderr %q), want %s", e.Output.Stdout, e.Output.Stderr, want)
			}
		})
	}

	// The host sees a sandbox as a few processes of gVisor's: when a bomb
	// exhausts its context's memory (255 forks of a kernel do), the host's
	// OOM killer takes the whole sandbox, not just the kernel. The context
	// is then reported dead; the host and the other contexts go on.
	t.Run("bombs", func(t *testing.T) {
		bystander := d.create(t)
		for _, code := range []string{forkBomb, memoryBomb} {
			bombed := d.create(t)
			e := d.execute(t, bombed, code, 120)
			limited := strings.HasPrefix(e.Output.Stdout, "stopped at the limit 11")
			if !limited && (e.Error == nil || !slices.Contains([]string{"MemoryError", "KernelDied", "ContainerDied"}, e.Error.Name)) {
				t.Errorf("bomb: %+v", e)
			}
			if e := d.execute(t, bystander, "print(1)", 30); e.Output.Stdout != "1\n" {
				t.Errorf("bystander after the bomb: %+v", e)
			}
			d.call(t, "DELETE", "/api/v1/contexts/"+bombed, nil, nil)
		}
	})

	t.Run("files", func(t *testing.T) {
		if status, body := d.putFile(t, id, "data.txt", bytes.NewReader([]byte("uploaded"))); status != http.StatusCreated {
			t.Fatalf("upload: status %d: %s", status, body)
		}
		if e := d.execute(t, id, "print(open('data.txt').read())", 30); e.Output.Stdout != "uploaded\n" {
			t.Errorf("the uploaded file: %+v", e)
		}
		if _, body := d.getFile(t, id, "data.txt"); string(body) != "uploaded" {
			t.Errorf("download: %q", body)
		}
	})

	t.Run("egress", func(t *testing.T) {
		var c contextJSON
		d.call(t, "POST", "/api/v1/contexts", map[string]any{"network": true}, &c)
		e := d.execute(t, c.ContextID, fetch+"print(fetch('http://deb.debian.org/debian/dists/trixie/Release'), fetch('http://169.254.169.254/'))", 60)
		if !strings.HasPrefix(e.Output.Stdout, "200 403 sandboxd: egress to 169.254.169.254") {
			t.Errorf("through the proxy: %+v", e)
		}
	})
}

// gvisorWant matches what a hostile attempt prints under gVisor, which
// answers every call with a kernel of its own: it implements io_uring
// itself (the call succeeds, and the host's io_uring is never reached), and
// it checks permissions before the read-only mount (EACCES, not EROFS).
func gvisorWant(name, want string) *regexp.Regexp {
	switch name {
	case "io_uring":
		return regexp.MustCompile(`^[0-9]+ 0\n$`)
	case "write outside workspace":
		return regexp.MustCompile(`^13\n$`)
	}
	return regexp.MustCompile("^" + regexp.QuoteMeta(want) + "$")
}

func utsString(b []int8) string {
	var s strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		s.WriteByte(byte(c))
	}
	return s.String()
}

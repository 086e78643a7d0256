package contexts

import (
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/internal/fileproto"
)

// The roles come from the process tree: init, what init started in its
// own session (the server), and the server's children (the kernels);
// what else init adopted, and what kernels start, has none. A state the
// daemon does not know is shown as the kernel's letter.
func TestProcessRoles(t *testing.T) {
	fileOp := strings.Join(fileproto.Command(fileproto.OpRead, "/workspace", "a.txt"), " ")
	ps := fileproto.Processes{Self: 50, List: []fileproto.Process{
		{PID: 60, PPID: 0, Session: 60, User: "sandbox", Cmdline: "timeout 30s bash -c sleep 9", State: 'S'},
		{PID: 1, PPID: 0, Session: 1, User: "sandbox", Cmdline: "/usr/bin/tini -- /usr/local/bin/start-jupyter", State: 'S'},
		{PID: 7, PPID: 1, Session: 1, User: "sandbox", Cmdline: "python3 -m jupyter_server", State: 'S'},
		{PID: 20, PPID: 7, Session: 20, User: "sandbox", Cmdline: "python3 sandboxd_kernel.py -f k.json", State: 'S'},
		{PID: 21, PPID: 20, Session: 20, User: "sandbox", Cmdline: "sleep 100", State: 'S'},
		{PID: 30, PPID: 1, Session: 28, User: "sandbox", Cmdline: "sleep 200", State: 'S'},
		{PID: 40, PPID: 0, Session: 40, UID: 1234, Cmdline: fileOp, State: 'Q'},
		{PID: 41, PPID: 0, Session: 41, User: "sandbox", Cmdline: "python3 -S -c # Carries one connection", State: 'S'},
		{PID: 50, PPID: 0, Session: 50, User: "sandbox", Cmdline: "sh -c listing", State: 'S'},
		{PID: 51, PPID: 50, Session: 50, User: "sandbox", Cmdline: "cat /proc/51/stat", State: 'S'},
	}}
	type row struct {
		PID         int
		User, State string
		Role        ProcessRole
	}
	var got []row
	for _, p := range processes(ps) {
		got = append(got, row{p.PID, p.User, p.State, p.Role})
	}
	want := []row{
		{1, "sandbox", "sleeping", RoleInit},
		{7, "sandbox", "sleeping", RoleServer},
		{20, "sandbox", "sleeping", RoleKernel},
		{21, "sandbox", "sleeping", ""},
		{30, "sandbox", "sleeping", ""},
		{40, "1234", "Q", RoleSandboxd},
		{41, "sandbox", "sleeping", RoleSandboxd},
		{60, "sandbox", "sleeping", ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("processes =\n%+v\nwant\n%+v", got, want)
	}
}

// A process the context's user may not signal is refused as protected,
// not as a path: kill's exit for it is the file protocol's "denied".
func TestKillDenied(t *testing.T) {
	rt := newFakeRuntime(nil)
	m, _ := newTestManager(t, rt, testConfig())
	id := mustCreate(t, m).ID
	// One process, 77, of root, alone in its session: no role.
	listing := "50\x001700000000\x00100\x004096\x00root:x:0:0::/root:/bin/sh\n\x00" +
		"77\x000\x0077 (sleep) S 1 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 555 1000 10\x00sleep 100\x00"
	rt.exec = func(spec ExecSpec) (int, error) {
		switch {
		case slices.Contains(spec.Cmd, string(fileproto.OpProcesses)):
			io.WriteString(spec.Stdout, listing)
			return 0, nil
		case slices.Contains(spec.Cmd, string(fileproto.OpKill)):
			io.WriteString(spec.Stderr, "cannot kill 77")
			return fileproto.ExitDenied, nil
		}
		return 1, nil
	}
	if p, err := m.GetProcess(t.Context(), id, 77); err != nil || p.Role != "" {
		t.Fatalf("process 77: %+v, %v", p, err)
	}
	if err := m.KillProcess(t.Context(), id, 77); Code(err) != CodeProcessProtected {
		t.Errorf("killing a process the user may not signal: %v, want %s", err, CodeProcessProtected)
	}
}

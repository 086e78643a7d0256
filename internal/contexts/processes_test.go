package contexts

import (
	"reflect"
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

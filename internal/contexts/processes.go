package contexts

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sandboxd/sandboxd/internal/bound"
	"github.com/sandboxd/sandboxd/internal/fileproto"
)

// Process is a process in a context's container.
type Process struct {
	PID, PPID int
	User      string // its user's name, or its uid where it has none
	// Name is the command's name as the kernel keeps it: 15 bytes at most.
	Name    string
	Cmdline string // the first 2 KiB of it
	// State is running, sleeping, disk-sleep, zombie, stopped, tracing-stop,
	// idle or dead.
	State   string
	Started time.Time
	CPU     time.Duration // user and system time
	RSS     int64         // resident memory, in bytes
	// Role names what the process is to the context, "" for anything its
	// code or commands started; a process with a role cannot be killed.
	Role  ProcessRole
	start uint64 // clock ticks after boot, to tell it from a later one
}

// ProcessRole is what a process is to the context.
type ProcessRole string

// The roles. The Jupyter server is what the container's init started,
// and kernels are the server's children: found so, by the process tree,
// whatever the image.
const (
	RoleInit   ProcessRole = "init"
	RoleServer ProcessRole = "jupyter-server"
	RoleKernel ProcessRole = "kernel"
	// RoleSandboxd is the daemon's own: a file operation, a connection's
	// relay, the egress forwarder.
	RoleSandboxd ProcessRole = "sandboxd"
)

// maxProcesses bounds a listing of processes. The container's process
// limit (256 by default) bounds it first.
const maxProcesses = 4096

var processStates = map[byte]string{
	'R': "running", 'S': "sleeping", 'D': "disk-sleep", 'Z': "zombie",
	'T': "stopped", 't': "tracing-stop", 'I': "idle", 'X': "dead", 'x': "dead",
}

// ListProcesses lists the processes in the context's container, by pid,
// but for the exec that lists them: no more than 4096 of them, the first
// the container's /proc gives. Errors: CodeNotFound, CodeContextDead,
// CodeRuntimeUnavailable.
func (m *Manager) ListProcesses(ctx context.Context, id string) ([]Process, error) {
	s, err := m.running(id)
	if err != nil {
		return nil, err
	}
	defer s.done()
	out, stderr := bound.NewBuffer(16<<20), bound.NewBuffer(64<<10)
	cmd := fileproto.Command(fileproto.OpProcesses, s.workDir, ".", strconv.Itoa(maxProcesses))
	code, err := m.rt.Exec(ctx, s.inst, ExecSpec{Cmd: cmd, User: ContextUser, Stdout: out, Stderr: stderr})
	switch {
	case err != nil:
		return nil, err
	case code != 0:
		return nil, fileError(code, ".", stderr)
	case out.Truncated():
		return nil, fmt.Errorf("list processes in %s: more than %d bytes", id, 16<<20)
	}
	ps, err := fileproto.ParseProcesses(out.String())
	if err != nil {
		return nil, fmt.Errorf("list processes in %s: %w", id, err)
	}
	return processes(ps), nil
}

// processes turns the protocol's listing into Processes, sorted by pid,
// without the listing's own, each with its role.
func processes(ps fileproto.Processes) []Process {
	byPID := map[int]fileproto.Process{}
	for _, p := range ps.List {
		byPID[p.PID] = p
	}
	// The server is what init started: init's child in init's session.
	// Orphans that init adopted keep sessions of their own; kernels start
	// sessions of their own too.
	isServer := func(p fileproto.Process) bool { return p.PID != 1 && p.PPID == 1 && p.Session == 1 }
	list := []Process{}
	for _, p := range ps.List {
		if p.Session == ps.Self {
			continue
		}
		var role ProcessRole
		switch {
		case p.PID == 1:
			role = RoleInit
		case isServer(p):
			role = RoleServer
		case p.PPID != 0 && isServer(byPID[p.PPID]):
			role = RoleKernel
		case isDaemonHelper(p.Cmdline):
			role = RoleSandboxd
		}
		user := p.User
		if user == "" {
			user = strconv.Itoa(p.UID)
		}
		state := processStates[p.State]
		if state == "" {
			state = string(p.State)
		}
		list = append(list, Process{
			PID: p.PID, PPID: p.PPID, User: user, Name: p.Name, Cmdline: p.Cmdline,
			State: state, Started: p.Started, CPU: p.CPU, RSS: p.RSS, Role: role, start: p.StartTicks,
		})
	}
	slices.SortFunc(list, func(a, b Process) int { return a.PID - b.PID })
	return list
}

// isDaemonHelper reports whether cmdline is one of the daemon's: the file
// protocol (sh -c SCRIPT sandboxd ...), or a relay or the egress forwarder,
// which run as python3 -S -c PROGRAM.
func isDaemonHelper(cmdline string) bool {
	return fileproto.IsCommand(cmdline) || strings.HasPrefix(cmdline, "python3 -S -c ")
}

// GetProcess returns the process pid of the context's container. Errors:
// CodeNotFound, CodeContextDead, CodeProcessNotFound,
// CodeRuntimeUnavailable.
func (m *Manager) GetProcess(ctx context.Context, id string, pid int) (Process, error) {
	list, err := m.ListProcesses(ctx, id)
	if err != nil {
		return Process{}, err
	}
	i := slices.IndexFunc(list, func(p Process) bool { return p.PID == pid })
	if i < 0 {
		return Process{}, Errorf(CodeProcessNotFound, "no process %d in the context's container", pid)
	}
	return list[i], nil
}

// KillProcess kills the process pid of the context's container with
// SIGKILL: that process alone, not its children or its process group.
// Init, the Jupyter server, the kernels and the daemon's own processes
// cannot be killed, nor a process of another user. Errors: CodeNotFound,
// CodeContextDead, CodeProcessNotFound, CodeProcessProtected,
// CodeRuntimeUnavailable.
func (m *Manager) KillProcess(ctx context.Context, id string, pid int) error {
	p, err := m.GetProcess(ctx, id, pid)
	if err != nil {
		return err
	}
	if p.Role != "" {
		return Errorf(CodeProcessProtected, "process %d is the context's %s, which cannot be killed; restart or delete the context instead", pid, p.Role)
	}
	_, code, stderr, err := m.fileOp(ctx, id, fileproto.OpKill, ".", strconv.Itoa(pid), strconv.FormatUint(p.start, 10))
	switch {
	case err != nil:
		return err
	case code == fileproto.ExitNotFound:
		// It ended since it was found.
		return Errorf(CodeProcessNotFound, "no process %d in the context's container", pid)
	case code == fileproto.ExitDenied:
		// kill(2) said EPERM: the process is not the context user's.
		return Errorf(CodeProcessProtected, "process %d is not the context's user's, which cannot kill it", pid)
	case code != 0:
		return fmt.Errorf("kill %d in %s: exited with %d: %s", pid, id, code, strings.TrimSpace(stderr.String()))
	}
	return nil
}

package docker

import (
	"encoding/json"
	"slices"

	"github.com/moby/profiles/seccomp"
)

// forbiddenSyscalls are taken out of Docker's default seccomp profile:
// ptrace lets code in a context inspect and steer its own kernel and Jupyter
// server; process_vm_* do the same without it.
var forbiddenSyscalls = []string{"ptrace", "process_vm_readv", "process_vm_writev"}

// seccompProfile returns the seccomp profile of context containers, as
// JSON: the default profile of current Docker releases, which, unlike the
// one built into older engines (20.10 allows io_uring, whose bugs have
// been a way out of containers), blocks io_uring, less forbiddenSyscalls.
func seccompProfile() (string, error) {
	p := seccomp.DefaultProfile()
	for i := range p.Syscalls {
		p.Syscalls[i].Names = slices.DeleteFunc(p.Syscalls[i].Names, func(name string) bool {
			return slices.Contains(forbiddenSyscalls, name)
		})
	}
	p.Syscalls = slices.DeleteFunc(p.Syscalls, func(s *seccomp.Syscall) bool { return len(s.Names) == 0 && s.Name == "" })
	b, err := json.Marshal(p)
	return string(b), err
}

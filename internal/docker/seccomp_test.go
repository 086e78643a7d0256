package docker

import (
	"strings"
	"testing"
)

func TestSeccompProfile(t *testing.T) {
	p, err := seccompProfile()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"io_uring_setup", "io_uring_enter", "ptrace", "process_vm_readv"} {
		if strings.Contains(p, `"`+name+`"`) {
			t.Errorf("profile allows %s", name)
		}
	}
	for _, name := range []string{"read", "clone", "execve"} {
		if !strings.Contains(p, `"`+name+`"`) {
			t.Errorf("profile does not allow %s", name)
		}
	}
	if !strings.Contains(p, `"defaultAction":"SCMP_ACT_ERRNO"`) {
		t.Errorf("profile does not deny by default: %.200s", p)
	}
}

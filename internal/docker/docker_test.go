package docker

import (
	"testing"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// Remove deletes the socket directory a container's label names: only the
// one Start would have made may pass, whatever else the label says.
func TestSocketDirTrustsOnlyItsOwn(t *testing.T) {
	r := &Runtime{cfg: Config{SocketDir: "/run/sandboxd/"}}
	for _, tt := range []struct {
		name, id, dir string
		ok            bool
	}{
		{"its own", "ctx-1", "/run/sandboxd/ctx-1", true},
		{"parent", "..", "/run/sandboxd/..", false},
		{"parent, cleaned", "..", "/run", false},
		{"the socket dir itself", ".", "/run/sandboxd/.", false},
		{"the socket dir, cleaned", ".", "/run/sandboxd", false},
		{"no id", "", "/run/sandboxd/ctx-1", false},
		{"another context's", "ctx-1", "/run/sandboxd/ctx-2", false},
		{"not clean", "ctx-1", "/run/sandboxd//ctx-1", false},
		{"a trailing slash", "ctx-1", "/run/sandboxd/ctx-1/", false},
		{"deeper", "ctx-1/x", "/run/sandboxd/ctx-1/x", false},
		{"an id climbing out", "ctx-1/../..", "/run", false},
		{"elsewhere", "ctx-1", "/tmp/ctx-1", false},
		{"no dir", "ctx-1", "", false},
	} {
		inst := contexts.Instance{Labels: map[string]string{labelContextID: tt.id, labelSocketDir: tt.dir}}
		if dir, ok := r.socketDir(inst); ok != tt.ok {
			t.Errorf("%s: id %q, dir %q: trusted %v (%q), want %v", tt.name, tt.id, tt.dir, ok, dir, tt.ok)
		}
	}
}

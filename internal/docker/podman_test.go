package docker

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/moby/moby/client"
)

// The seccomp option carries the profile itself to Docker, and to Podman
// the path of a file holding it; which engine answers is asked once.
func TestSeccompOpt(t *testing.T) {
	for _, tt := range []struct {
		name, version string
		podman        bool
	}{
		{"docker", `{"Version":"20.10.24","Components":[{"Name":"Engine","Version":"20.10.24"},{"Name":"containerd"}]}`, false},
		{"podman", `{"Version":"4.3.1","Components":[{"Name":"Podman Engine","Version":"4.3.1"},{"Name":"Conmon"}]}`, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var asked atomic.Int32
			engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if !strings.HasSuffix(req.URL.Path, "/version") {
					http.NotFound(w, req)
					return
				}
				asked.Add(1)
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, tt.version)
			}))
			defer engine.Close()
			cli, err := client.New(client.WithHost("tcp://"+engine.Listener.Addr().String()), client.WithAPIVersion("1.41"))
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			dir := t.TempDir()
			r := &Runtime{cli: cli, cfg: Config{SocketDir: dir}, seccomp: `{"defaultAction":"SCMP_ACT_ERRNO"}`, log: slog.New(slog.DiscardHandler)}

			for range 2 {
				opt, err := r.seccompOpt(t.Context(), TransportSocket)
				if err != nil {
					t.Fatal(err)
				}
				value, _ := strings.CutPrefix(opt, "seccomp=")
				if !tt.podman {
					if value != r.seccomp {
						t.Errorf("option %q, want the profile itself", opt)
					}
					continue
				}
				if b, err := os.ReadFile(value); err != nil || string(b) != r.seccomp {
					t.Errorf("option %q: file holds %q, %v", opt, b, err)
				}
			}
			// Over exec, Podman could not read a file of the daemon's.
			opt, err := r.seccompOpt(t.Context(), TransportExec)
			if want := map[bool]string{true: "", false: "seccomp=" + r.seccomp}[tt.podman]; err != nil || opt != want {
				t.Errorf("over exec: option %q, %v; want %q", opt, err, want)
			}
			if n := asked.Load(); n != 1 {
				t.Errorf("asked the engine's version %d times, want once", n)
			}
			// Nothing but Podman's profile is left beside the contexts.
			want := 0
			if tt.podman {
				want = 1
			}
			if entries, _ := os.ReadDir(dir); len(entries) != want {
				t.Errorf("socket dir holds %v, want %d files", entries, want)
			}
		})
	}
}

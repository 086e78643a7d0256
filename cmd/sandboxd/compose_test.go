package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sandboxd/sandboxd/internal/apitest"
	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// compose runs docker-compose on the repository's docker-compose.yml.
func compose(env []string, args ...string) error {
	cmd := exec.Command("docker-compose", append([]string{"-f", "../../docker-compose.yml"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// requireCompose skips or fails tb as testenv.RequireDocker does, and
// also when docker-compose is not installed; it fails tb when the image
// docker-compose.yml runs has not been built: the tests that use the
// images make images built must not wait minutes for a build of their own.
func requireCompose(tb testing.TB) {
	tb.Helper()
	requireComposeTool(tb)
	if err := exec.Command("docker", "image", "inspect", "sandboxd/sandboxd:latest").Run(); err != nil {
		tb.Fatal("image sandboxd/sandboxd:latest is missing: run make images")
	}
}

// requireComposeTool skips or fails tb as testenv.RequireDocker does, and
// also when docker-compose is not installed.
func requireComposeTool(tb testing.TB) {
	tb.Helper()
	testenv.RequireDocker(tb)
	if _, err := exec.LookPath("docker-compose"); err != nil {
		if os.Getenv("SANDBOXD_REQUIRE_DOCKER") != "" {
			tb.Fatal("docker-compose is required but not installed")
		}
		tb.Skip("docker-compose not installed")
	}
}

// The README's way to start sandboxd: docker-compose up, curl, and
// docker-compose down leaves no kernel container.
func TestDockerCompose(t *testing.T) {
	requireCompose(t)
	owner := testenv.Owner(t)
	addr := freeAddr(t)
	env := []string{"COMPOSE_PROJECT_NAME=" + owner, "SANDBOXD_NAME=" + owner, "SANDBOXD_CONTAINER_NAME=" + owner, "SANDBOXD_PORT=" + addr[strings.LastIndex(addr, ":")+1:]}
	// The project and container names are the test's own: never the user's.
	t.Cleanup(func() { compose(env, "down") })
	if err := compose(env, "up", "-d"); err != nil {
		t.Fatal(err)
	}

	d := &daemon{url: "http://" + addr, validator: apitest.New(t)}
	d.waitHealthy(t, time.Minute)

	id := d.create(t)
	if e := d.execute(t, id, `print("Hello from Local Sandbox")`, 30); e.Output.Stdout != "Hello from Local Sandbox\n" {
		t.Errorf("got %+v", e)
	}
	if n := labelled(t, "sandboxd.context_id="+id); n != 1 {
		t.Errorf("%d containers of the context, want 1", n)
	}

	if err := compose(env, "down"); err != nil {
		t.Fatal(err)
	}
	if n := labelled(t, "sandboxd.owner="+owner); n != 0 {
		t.Errorf("%d kernel containers left after docker-compose down", n)
	}
}

// labelled counts the containers, running or not, with label (name=value).
func labelled(tb testing.TB, label string) int {
	tb.Helper()
	return len(labelledIDs(tb, label))
}

// labelledIDs returns the ids of the containers, running or not, with
// label (name=value).
func labelledIDs(tb testing.TB, label string) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "ps", "-aq", "--filter", "label="+label).Output()
	if err != nil {
		tb.Fatal(err)
	}
	return strings.Fields(string(out))
}

// runnerIDs returns the one-shot runner containers of the daemon owner.
func runnerIDs(tb testing.TB, owner string) []string {
	tb.Helper()
	out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=sandboxd.owner="+owner, "--filter", "label="+contexts.LabelRole).Output()
	if err != nil {
		tb.Fatal(err)
	}
	return strings.Fields(string(out))
}

// The deployment docker-compose.yml makes where the engine's host shares no
// directory with the daemon, as on Docker Desktop for macOS and Windows:
// the daemon's container mounts nothing of the host's but the engine's
// socket, its kernels nothing of the host's at all, and everything that
// passes between the daemon and a kernel works all the same: executions,
// blocking, streamed and relayed over the websocket; interrupts; kernel
// restarts; files; commands; egress; restarts of the daemon, and a new
// container of it, that keep its contexts; and down -v leaves nothing. The
// override changes only what sets this deployment apart from others on the
// engine, and what the test exercises.
func TestComposeDeployment(t *testing.T) {
	requireCompose(t)
	owner := testenv.Owner(t)
	addr := freeAddr(t)
	override := filepath.Join(t.TempDir(), "docker-compose.override.yml")
	writeOverride := func(keepContexts bool) {
		t.Helper()
		yml := fmt.Sprintf(`services:
  sandbox-code-interpreter:
    container_name: %s
    environment:
      SANDBOXD_NAME: %s
      SANDBOXD_POOL: python=1
      SANDBOXD_ALLOW_EGRESS: "true"
      SANDBOXD_KEEP_CONTEXTS: "%t"
`, owner, owner, keepContexts)
		if err := os.WriteFile(override, []byte(yml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The port is published from docker-compose.yml's own variable: ports
	// in an override are added to the file's, not put in their place. An
	// API key set where the test runs must not reach the daemon.
	env := []string{"SANDBOXD_PORT=" + addr[strings.LastIndex(addr, ":")+1:], "SANDBOXD_API_KEY="}
	args := func(more ...string) []string { return append([]string{"-f", override, "-p", owner}, more...) }
	dc := func(more ...string) error { return compose(env, args(more...)...) }

	// The daemon's logs tell why a step failed, until down removes them.
	down := false
	logs := func() {
		cmd := exec.Command("docker-compose", append([]string{"-f", "../../docker-compose.yml"}, args("logs", "--no-color")...)...)
		cmd.Env = append(os.Environ(), env...)
		out, _ := cmd.CombinedOutput()
		t.Logf("docker-compose logs:\n%s", out)
	}

	writeOverride(true)
	t.Cleanup(func() {
		if t.Failed() && !down {
			logs()
		}
		if err := dc("down", "-v"); err != nil {
			t.Error(err)
		}
		// A daemon that keeps its contexts leaves them running when stopped.
		if ids := labelledIDs(t, "sandboxd.owner="+owner); len(ids) > 0 {
			exec.Command("docker", append([]string{"rm", "-f", "-v"}, ids...)...).Run()
		}
	})
	if err := dc("up", "-d"); err != nil {
		t.Fatal(err)
	}
	d := &daemon{url: "http://" + addr, validator: apitest.New(t)}
	d.waitHealthy(t, time.Minute)

	a := d.create(t)
	var b contextJSON
	if status := d.call(t, "POST", "/api/v1/contexts", map[string]any{"language": "python", "network": true}, &b); status != http.StatusCreated {
		t.Fatalf("create with network: status %d", status)
	}
	const release = "http://deb.debian.org/debian/dists/trixie/Release"

	t.Run("execute", func(t *testing.T) {
		if e := d.execute(t, a, `print("hello")`, 30); !e.Success || e.Output.Stdout != "hello\n" {
			t.Errorf("print: %+v", e)
		}
	})
	t.Run("kernel restart", func(t *testing.T) {
		d.execute(t, a, "y = 1", 0)
		var r struct {
			contextJSON
			Restarts int `json:"restarts"`
		}
		if status := d.call(t, "POST", "/api/v1/contexts/"+a+"/restart", nil, &r); status != 200 || r.Restarts != 1 || r.Status != "active" {
			t.Fatalf("restart: %d %+v", status, r)
		}
		if e := d.execute(t, a, "print('y' in globals())", 0); e.Output.Stdout != "False\n" {
			t.Errorf("after restart: %+v", e)
		}
	})
	// From here on, x is the state the restarts of the daemon must keep.
	d.execute(t, a, "x = 42", 0)
	t.Run("state kept", func(t *testing.T) {
		if e := d.execute(t, a, "print(x)", 0); e.Output.Stdout != "42\n" {
			t.Errorf("print(x): %+v", e)
		}
	})
	t.Run("streaming", func(t *testing.T) {
		events := d.stream(t, "/api/v1/contexts/"+a+"/execute", map[string]any{"code": "import time\nprint('first', flush=True)\ntime.sleep(1)\nprint(x)", "timeout": 30})
		if got := eventNames(events); got != "stdout stdout end" {
			t.Fatalf("events %q, want stdout stdout end", got)
		}
		if events[0].data != `{"text":"first\n"}` {
			t.Errorf("first event %s", events[0].data)
		}
		var end executeJSON
		if err := json.Unmarshal([]byte(events[2].data), &end); err != nil || !end.Success || end.Output.Stdout != "first\n42\n" {
			t.Errorf("end event %s: %v", events[2].data, err)
		}
	})
	t.Run("interrupt", func(t *testing.T) {
		checkInterrupt(t, d, a, "import time; time.sleep(60)", "print(x)", "42\n")
	})
	t.Run("websocket relay", func(t *testing.T) {
		conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(d.url, "http")+"/api/v1/contexts/"+a+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		sendExecute(t, conn, "m1", "print(x)\nx + 1", 30)
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		var got []string
		for len(got) == 0 || got[len(got)-1] != "idle" {
			var m wsMessage
			if err := conn.ReadJSON(&m); err != nil {
				t.Fatalf("after %q: %v", got, err)
			}
			switch m.Header.MsgType {
			case "stream":
				got = append(got, "stream:"+m.Content["text"].(string))
			case "execute_result":
				got = append(got, "result:"+m.Content["data"].(map[string]any)["text/plain"].(string))
			case "execute_reply":
				got = append(got, "reply:"+m.Content["status"].(string))
			case "status":
				got = append(got, m.Content["execution_state"].(string))
			}
		}
		if want := "busy stream:42\n result:43 reply:ok idle"; strings.Join(got, " ") != want {
			t.Errorf("messages %q, want %q", strings.Join(got, " "), want)
		}
	})
	t.Run("files", func(t *testing.T) {
		if status, body := d.putFile(t, a, "data/in.txt", bytes.NewReader([]byte("uploaded\n"))); status != http.StatusCreated {
			t.Fatalf("PUT: %d %s", status, body)
		}
		if e := d.execute(t, a, "print(open('data/in.txt').read(), end='')\nopen('out.txt', 'w').write('written')", 0); e.Output.Stdout != "uploaded\n" {
			t.Errorf("the kernel reading the upload: %+v", e)
		}
		if resp, body := d.getFile(t, a, "out.txt"); resp.StatusCode != 200 || string(body) != "written" {
			t.Errorf("GET out.txt: %d %q", resp.StatusCode, body)
		}
		var list struct{ Files []fileEntryJSON }
		d.call(t, "GET", "/api/v1/contexts/"+a+"/files", nil, &list)
		var names []string
		for _, f := range list.Files {
			names = append(names, fmt.Sprintf("%s:%v", f.Path, f.IsDir))
		}
		if got := strings.Join(names, " "); got != "data:true out.txt:false" {
			t.Errorf("listing %q", got)
		}
		if status := d.call(t, "DELETE", "/api/v1/contexts/"+a+"/files/out.txt", nil, nil); status != http.StatusNoContent {
			t.Errorf("DELETE: %d", status)
		}
		if resp, body := d.getFile(t, a, "out.txt"); resp.StatusCode != 404 {
			t.Errorf("GET after DELETE: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("command", func(t *testing.T) {
		if c := d.command(t, a, map[string]any{"command": "cat data/in.txt; echo $((6 * 7))"}); c.Stdout != "uploaded\n42\n" || c.ExitCode != 0 {
			t.Errorf("command: %+v", c)
		}
	})
	t.Run("egress", func(t *testing.T) {
		d.execute(t, b.ContextID, fetch, 30)
		if e := d.execute(t, b.ContextID, fmt.Sprintf("print(fetch(%q))", release), 60); e.Output.Stdout != "200\n" {
			t.Errorf("GET %s: %+v", release, e)
		}
	})
	// Both contexts and the pool's kernel, once it is back.
	d.waitPoolFull(t)
	checkNoSharedDirectory(t, owner, 3)

	// A restart of the daemon keeps its contexts, over whatever it reaches
	// them by.
	if err := dc("restart"); err != nil {
		t.Fatal(err)
	}
	d.waitHealthy(t, time.Minute)
	waitStatus(t, d, a, "active")
	waitStatus(t, d, b.ContextID, "active")
	if e := d.execute(t, a, "print(x)", 0); e.Output.Stdout != "42\n" {
		t.Errorf("after docker-compose restart: %+v", e)
	}
	if resp, body := d.getFile(t, a, "data/in.txt"); resp.StatusCode != 200 || string(body) != "uploaded\n" {
		t.Errorf("GET data/in.txt after docker-compose restart: %d %q", resp.StatusCode, body)
	}
	if e := d.execute(t, b.ContextID, fmt.Sprintf("print(fetch(%q))", release), 60); e.Output.Stdout != "200\n" {
		t.Errorf("egress after docker-compose restart: %+v", e)
	}

	// A new container, as after docker-compose pull, takes the contexts
	// over too; told not to keep them, it removes them when it stops.
	writeOverride(false)
	if err := dc("up", "-d"); err != nil {
		t.Fatal(err)
	}
	d.waitHealthy(t, time.Minute)
	waitStatus(t, d, a, "active")
	if e := d.execute(t, a, "print(x)", 0); e.Output.Stdout != "42\n" {
		t.Errorf("after the daemon's container was recreated: %+v", e)
	}
	d.waitPoolFull(t)
	checkNoSharedDirectory(t, owner, 3)

	if t.Failed() {
		logs()
	}
	down = true
	if err := dc("down", "-v"); err != nil {
		t.Fatal(err)
	}
	if n := labelled(t, "sandboxd.owner="+owner); n != 0 {
		t.Errorf("%d kernel containers left after docker-compose down -v", n)
	}
	if out, err := exec.Command("docker", "volume", "ls", "-q", "--filter", "label=com.docker.compose.project="+owner).Output(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("volumes left after docker-compose down -v: %q %v", out, err)
	}
}

// checkNoSharedDirectory checks that the daemon container named owner
// binds nothing of the host's but the engine's socket, and that each of
// its want kernel containers binds nothing of the host's at all.
func checkNoSharedDirectory(t *testing.T, owner string, want int) {
	t.Helper()
	for _, m := range bindMounts(t, owner) {
		if m.Destination != "/var/run/docker.sock" {
			t.Errorf("the daemon's container %s binds the host's %s at %s", m.Container, m.Source, m.Destination)
		}
	}
	// The one-shot runners, which start and go on their own, are checked
	// for mounts but not counted.
	ids := labelledIDs(t, "sandboxd.owner="+owner)
	if n := len(ids) - len(runnerIDs(t, owner)); n != want {
		t.Errorf("%d kernel containers, want %d", n, want)
	}
	if len(ids) == 0 {
		return
	}
	for _, m := range bindMounts(t, ids...) {
		t.Errorf("kernel container %s binds the host's %s at %s", m.Container, m.Source, m.Destination)
	}
}

// bindMount is a bind mount of a container's, as docker inspect tells it.
type bindMount struct {
	Container, Source, Destination string
}

// bindMounts returns the bind mounts of the containers.
func bindMounts(tb testing.TB, containers ...string) []bindMount {
	tb.Helper()
	out, err := exec.Command("docker", append([]string{"inspect"}, containers...)...).Output()
	if err != nil {
		tb.Fatalf("docker inspect: %v", err)
	}
	var inspected []struct {
		Name   string
		Mounts []struct{ Type, Source, Destination string }
	}
	if err := json.Unmarshal(out, &inspected); err != nil {
		tb.Fatal(err)
	}
	var binds []bindMount
	for _, c := range inspected {
		for _, m := range c.Mounts {
			if m.Type == "bind" {
				binds = append(binds, bindMount{strings.TrimPrefix(c.Name, "/"), m.Source, m.Destination})
			}
		}
	}
	return binds
}

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// The AgentRun migration guide's commands, as written, on a fresh clone of
// this repository: a bare docker-compose up -d in its root builds the
// images it lacks (sandboxd from source, the kernel images) and starts the
// service sandbox-code-interpreter; docker-compose ps, docker-compose logs
// -f, curl /health, docker ps | grep, docker logs (| grep ERROR) and the
// guide's create and execute calls answer as it says; a second up builds
// nothing; down removes the container. The clone is of the commit checked
// out. Its compose project, images, container, daemon name and port are
// the test's own, so it neither uses nor removes the user's; the daemon's
// image is built from source (minutes), the kernel images reuse whatever
// layers make images left.
func TestComposeFreshClone(t *testing.T) {
	requireComposeTool(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is required: the guide's commands use it")
	}
	owner := testenv.Owner(t)
	// The guide greps docker ps for this name.
	container := "sandbox-code-interpreter-" + owner
	addr := freeAddr(t)
	port := addr[strings.LastIndex(addr, ":")+1:]

	dir := filepath.Join(t.TempDir(), "sandboxd")
	if out, err := exec.Command("git", "clone", "-q", "../..", dir).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	env := append(os.Environ(),
		"COMPOSE_PROJECT_NAME="+owner,
		"SANDBOXD_IMAGE_PREFIX="+owner,
		"SANDBOXD_CONTAINER_NAME="+container,
		"SANDBOXD_NAME="+owner,
		"SANDBOXD_PORT="+port,
		"SANDBOXD_API_KEY=",
	)
	if os.Getenv("SANDBOXD_BUILD_CA_CERTS") == "" {
		env = append(env, "SANDBOXD_BUILD_CA_CERTS="+localCACerts(t))
	}
	g := guide{dir: dir, env: env}
	must := func(line string) string { t.Helper(); return g.must(t, line) }

	buildCache := imagesLabelled(t, "sandboxd.stage=build")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := g.run("docker-compose logs --no-color")
			t.Logf("docker-compose logs:\n%s", out)
		}
		if out, err := g.run("docker-compose down -v"); err != nil {
			t.Errorf("docker-compose down -v: %v\n%s", err, out)
		}
		if ids := labelledIDs(t, "sandboxd.owner="+owner); len(ids) > 0 {
			exec.Command("docker", append([]string{"rm", "-f", "-v"}, ids...)...).Run()
		}
		// The images it built, and the build stage's leftovers it made;
		// those that other images still use stay.
		images := imagesNamed(t, owner+"/*")
		for _, id := range imagesLabelled(t, "sandboxd.stage=build") {
			if !slices.Contains(buildCache, id) {
				images = append(images, id)
			}
		}
		if len(images) > 0 {
			if out, err := exec.Command("docker", append([]string{"rmi"}, images...)...).CombinedOutput(); err != nil {
				t.Errorf("docker rmi: %v\n%s", err, out)
			}
		}
	})

	start := time.Now()
	up := must("docker-compose up -d")
	t.Logf("docker-compose up -d on a fresh clone, building every image: %s", time.Since(start).Round(time.Second))
	services := strings.Fields(must("docker-compose config --services"))
	for _, s := range services {
		image := owner + "/" + s + ":latest"
		if s == "sandbox-code-interpreter" {
			image = owner + "/sandboxd:latest"
		}
		if !strings.Contains(up, "Successfully tagged "+image) {
			t.Errorf("docker-compose up -d did not build %s:\n%s", image, up)
		}
	}

	// Only the daemon runs: the kernel images' services are build-only.
	ps := must("docker-compose ps")
	if lines := strings.Split(strings.TrimSpace(ps), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[2], container+" ") || !strings.Contains(lines[2], " Up ") {
		t.Errorf("docker-compose ps: want one line, %s Up:\n%s", container, ps)
	}
	g.follow(t, "docker-compose logs -f sandbox-code-interpreter", "sandboxd listening")

	if out := must("curl -sS http://localhost:" + port + "/health"); out != "OK" {
		t.Errorf("curl /health: %q, want OK", out)
	}
	if out := must("docker ps | grep sandbox-code-interpreter"); !strings.Contains(out, container) {
		t.Errorf("docker ps | grep sandbox-code-interpreter: no %s in\n%s", container, out)
	}
	if out := must("docker logs " + container); !strings.Contains(out, "sandboxd listening") {
		t.Errorf("docker logs: no start line in\n%s", out)
	}
	if out, err := g.run("docker logs " + container + " | grep ERROR"); err == nil {
		t.Errorf("errors logged before any request:\n%s", out)
	}

	var created contextJSON
	out := must(`curl -sS -X POST http://localhost:` + port + `/api/v1/contexts \
  -H "Content-Type: application/json" \
  -d '{
    "type": "jupyter",
    "language": "python",
    "session_name": "test-session",
    "working_dir": "/workspace"
  }'`)
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.ContextID == "" || created.Status != "active" {
		t.Fatalf("create: %v %s", err, out)
	}
	var executed executeJSON
	out = must(`curl -sS -X POST http://localhost:` + port + `/api/v1/contexts/` + created.ContextID + `/execute \
  -H "Content-Type: application/json" \
  -d '{
    "code": "print(\"Hello from Local Sandbox\")",
    "timeout": 30
  }'`)
	if err := json.Unmarshal([]byte(out), &executed); err != nil || !executed.Success || executed.Output.Stdout != "Hello from Local Sandbox\n" {
		t.Errorf("execute: %v %s", err, out)
	}

	// The images exist now: up uses them as they are.
	if out := must("docker-compose up -d"); strings.Contains(out, "Building") {
		t.Errorf("a second docker-compose up -d built again:\n%s", out)
	}

	// A context that cannot be made is an ERROR line that the guide's grep
	// finds: here, its image is gone.
	must("docker rmi " + owner + "/r-kernel:latest")
	if out := must(`curl -sS -o /dev/null -w '%{http_code}' -X POST http://localhost:` + port + `/api/v1/contexts -H "Content-Type: application/json" -d '{"language": "r"}'`); !strings.HasPrefix(out, "5") {
		t.Errorf("create an R context without its image: status %s, want 5xx", out)
	}
	if out := must("docker logs " + container + " | grep ERROR"); !strings.Contains(out, "request failed") {
		t.Errorf("docker logs | grep ERROR: %q, want the failed create", out)
	}

	must("docker-compose down")
	if out, err := exec.Command("docker", "ps", "-aq", "--filter", "name=^/"+container+"$").Output(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("container %s left after docker-compose down: %q %v", container, out, err)
	}
	if n := labelled(t, "sandboxd.owner="+owner); n != 0 {
		t.Errorf("%d kernel containers left after docker-compose down", n)
	}
}

// guide runs command lines, as a user types them, in dir with env.
type guide struct {
	dir string
	env []string
}

func (g guide) command(ctx context.Context, line string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "sh", "-c", line)
	cmd.Dir, cmd.Env = g.dir, g.env
	return cmd
}

// run runs line and returns its output, stdout and stderr together.
func (g guide) run(line string) (string, error) {
	out, err := g.command(context.Background(), line).CombinedOutput()
	return string(out), err
}

// must runs line, and fails tb unless it succeeds.
func (g guide) must(tb testing.TB, line string) string {
	tb.Helper()
	out, err := g.run(line)
	if err != nil {
		tb.Fatalf("%s: %v\n%s", line, err, out)
	}
	return out
}

// follow runs line, a command that follows logs, until a line of its
// output contains want, and fails tb when none does in two minutes.
func (g guide) follow(tb testing.TB, line, want string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// exec: the timeout kills the command itself, not a shell around it.
	cmd := g.command(ctx, "exec "+line+" 2>&1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	var seen strings.Builder
	found := false
	for s := bufio.NewScanner(out); s.Scan() && !found; {
		seen.WriteString(s.Text() + "\n")
		found = strings.Contains(s.Text(), want)
	}
	cancel()
	cmd.Wait()
	if !found {
		tb.Fatalf("%s: no line with %q in two minutes:\n%s", line, want, seen.String())
	}
}

// localCACerts returns the certificates added to this machine's trust
// store (Debian's place for them): where a proxy intercepts TLS, the Go
// build reaches the module proxy only by trusting them too.
func localCACerts(tb testing.TB) string {
	tb.Helper()
	files, err := filepath.Glob("/usr/local/share/ca-certificates/*.crt")
	if err != nil {
		tb.Fatal(err)
	}
	var pem strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		pem.Write(b)
	}
	return pem.String()
}

// imagesNamed returns the names of the images that match reference.
func imagesNamed(tb testing.TB, reference string) []string {
	tb.Helper()
	out, err := exec.Command("docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference="+reference).Output()
	if err != nil {
		tb.Fatalf("docker images --filter reference=%s: %v", reference, err)
	}
	return strings.Fields(string(out))
}

// imagesLabelled returns the ids of the images with label (name=value).
func imagesLabelled(tb testing.TB, label string) []string {
	tb.Helper()
	out, err := exec.Command("docker", "images", "-q", "--no-trunc", "--filter", "label="+label).Output()
	if err != nil {
		tb.Fatalf("docker images --filter label=%s: %v", label, err)
	}
	return strings.Fields(string(out))
}

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/apitest"
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

// The README's way to start sandboxd: docker-compose up, curl, and
// docker-compose down leaves no kernel container.
func TestDockerCompose(t *testing.T) {
	testenv.RequireDocker(t)
	if _, err := exec.LookPath("docker-compose"); err != nil {
		if os.Getenv("SANDBOXD_REQUIRE_DOCKER") != "" {
			t.Fatal("docker-compose is required but not installed")
		}
		t.Skip("docker-compose not installed")
	}
	if err := exec.Command("docker", "image", "inspect", "sandboxd/sandboxd:latest").Run(); err != nil {
		t.Fatal("image sandboxd/sandboxd:latest is missing: run make images")
	}

	owner := testenv.Owner(t)
	addr := freeAddr(t)
	env := []string{"COMPOSE_PROJECT_NAME=" + owner, "SANDBOXD_NAME=" + owner, "SANDBOXD_PORT=" + addr[strings.LastIndex(addr, ":")+1:]}
	// The project name is the test's own: never the user's compose project.
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "ps", "-aq", "--filter", "label="+label).Output()
	if err != nil {
		tb.Fatal(err)
	}
	return len(strings.Fields(string(out)))
}

package sandboxd_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/client"
	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/testcontainers/sandboxd"
)

// The sandboxd image, started as a user's test would, runs code; terminating
// it leaves no kernel container behind.
func TestRun(t *testing.T) {
	testenv.RequireDocker(t)
	// Ryuk is an image of its own, and no registry is reachable here.
	t.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	// testcontainers takes this machine for a container (it has a
	// /.dockerenv) and would reach ports through its gateway instead.
	t.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "localhost")
	ctx := context.Background()

	ctr, err := sandboxd.Run(ctx, sandboxd.DefaultImage)
	if ctr != nil {
		t.Cleanup(func() { ctr.Terminate(context.Background()) })
	}
	if err != nil {
		t.Fatal(err)
	}
	url, err := ctr.URL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(url, client.WithAPIKey(ctr.APIKey()))
	if _, err := client.New(url).ListContexts(ctx); !client.IsCode(err, client.CodeUnauthorized) {
		t.Errorf("without the key: %v", err)
	}
	sc, err := c.CreateContext(ctx, client.CreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Execute(ctx, sc.ID, client.ExecuteRequest{Code: "print(6 * 7)"})
	if err != nil || res.Output.Stdout != "42\n" {
		t.Fatalf("execute: %+v, %v", res, err)
	}

	// Its kernel containers carry its name; its pool's too.
	inspect, err := ctr.Inspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var owner string
	for _, e := range inspect.Config.Env {
		if v, ok := strings.CutPrefix(e, "SANDBOXD_NAME="); ok {
			owner = v
		}
	}
	if err := ctr.Terminate(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=sandboxd.owner="+owner).Output()
	if err != nil {
		t.Fatal(err)
	}
	if ids := strings.Fields(string(out)); owner == "" || len(ids) != 0 {
		t.Errorf("containers of %q left after Terminate: %q", owner, ids)
	}
}

// Package kubetest brings up the real one-node Kubernetes of scripts/kube
// for tests that need pods, exec and NetworkPolicies, and tears it down.
package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Cluster is a running cluster.
type Cluster struct {
	Kubeconfig string // the admin kubeconfig
	Dir        string // the state directory; components' logs are in Dir/logs
	root       string
}

// Start builds the cluster's binaries (minutes the first time, then
// nothing) and brings the cluster up. It needs root. The cluster's state
// directory is $SANDBOXD_KUBE_DIR, by default /var/lib/sandboxd-kube; one
// cluster per machine at a time.
func Start(ctx context.Context) (*Cluster, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	if _, err := run(ctx, root, "build.sh"); err != nil {
		return nil, err
	}
	out, err := run(ctx, root, "up.sh")
	if err != nil {
		// Leave nothing half up behind.
		if _, downErr := run(context.Background(), root, "down.sh"); downErr != nil {
			err = errors.Join(err, downErr)
		}
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	kubeconfig := lines[len(lines)-1]
	return &Cluster{Kubeconfig: kubeconfig, Dir: filepath.Dir(kubeconfig), root: root}, nil
}

// Stop tears the cluster down, leaving only its logs.
func (c *Cluster) Stop() error {
	_, err := run(context.Background(), c.root, "down.sh")
	return err
}

func run(ctx context.Context, root, script string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "kube", script))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("scripts/kube/%s: %w\n%s", script, err, lastLines(stderr.String(), 20))
	}
	return stdout.String(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// repoRoot walks up from the working directory, which go test sets to the
// package's directory, to the directory holding scripts/kube.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "kube", "up.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("kubetest: no scripts/kube/up.sh above the working directory")
		}
		dir = parent
	}
}

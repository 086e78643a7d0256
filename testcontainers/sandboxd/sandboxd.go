// Package sandboxd starts sandboxd in a container for Go tests, with
// testcontainers-go:
//
//	ctr, err := sandboxd.Run(ctx, "sandboxd/sandboxd:latest")
//	defer ctr.Terminate(ctx)
//	url, err := ctr.URL(ctx) // http://localhost:49153, ready to create contexts
//
//	c := client.New(url, client.WithAPIKey(ctr.APIKey()))
//
// The container gets the host's Docker socket, since sandboxd starts each
// context as a sibling container, and a directory for the kernels' unix
// sockets at the same path as on the host. Its port is published as
// testcontainers publishes ports, reachable from other machines, so it
// requires a random API key. Where no image can be pulled (testcontainers'
// Ryuk reaper is itself an image), set TESTCONTAINERS_RYUK_DISABLED=true and
// terminate the container yourself.
package sandboxd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// DefaultImage is the image make images builds.
const DefaultImage = "sandboxd/sandboxd:latest"

const port = "8080/tcp"

// Container is a running sandboxd.
type Container struct {
	*testcontainers.DockerContainer
	socketDir string
	apiKey    string
}

// Run starts sandboxd from img and returns once it answers /readyz. opts
// customise the container as for testcontainers.Run; sandboxd's flags are
// set through their SANDBOXD_* variables with testcontainers.WithEnv.
func Run(ctx context.Context, img string, opts ...testcontainers.ContainerCustomizer) (*Container, error) {
	// The engine mounts this into the kernel containers by its host path.
	dir, err := os.MkdirTemp("", "sbx-tc-")
	if err != nil {
		return nil, fmt.Errorf("socket dir: %w", err)
	}
	engine := testcontainers.MustExtractDockerSocket(ctx)
	key := make([]byte, 16)
	rand.Read(key)
	apiKey := hex.EncodeToString(key)
	base := []testcontainers.ContainerCustomizer{
		testcontainers.WithExposedPorts(port),
		testcontainers.WithEnv(map[string]string{
			"SANDBOXD_SOCKET_DIR": dir,
			// Its own name, so that it removes no other sandboxd's contexts.
			"SANDBOXD_NAME":    "tc-" + filepath.Base(dir),
			"SANDBOXD_API_KEY": apiKey,
		}),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.Binds = append(hc.Binds, engine+":/var/run/docker.sock", dir+":"+dir)
		}),
		testcontainers.WithWaitStrategy(wait.ForHTTP("/readyz").WithPort(port).
			WithHeaders(map[string]string{"Authorization": "Bearer " + apiKey}).
			WithStartupTimeout(2 * time.Minute)),
	}
	ctr, err := testcontainers.Run(ctx, img, append(base, opts...)...)
	var c *Container
	if ctr != nil {
		c = &Container{DockerContainer: ctr, socketDir: dir, apiKey: apiKey}
	}
	if err != nil {
		if c == nil {
			os.RemoveAll(dir)
		}
		return c, fmt.Errorf("run sandboxd: %w", err)
	}
	return c, nil
}

// APIKey returns the key the API requires as Authorization: Bearer.
func (c *Container) APIKey() string { return c.apiKey }

// URL returns the base URL of the API, as http://host:port.
func (c *Container) URL(ctx context.Context) (string, error) {
	return c.PortEndpoint(ctx, port, "http")
}

// Terminate stops sandboxd, which removes its contexts' containers, then
// removes its container and socket directory.
func (c *Container) Terminate(ctx context.Context, opts ...testcontainers.TerminateOption) error {
	err := c.DockerContainer.Terminate(ctx, opts...)
	return errors.Join(err, os.RemoveAll(c.socketDir))
}

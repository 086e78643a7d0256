package contexts

import "context"

// Spec is what a context's container is made from.
type Spec struct {
	ContextID string
	Image     string
	Token     string // the Jupyter server's token
	// Labels describe the context on its container, so it can be found again.
	Labels map[string]string
}

// Instance is a context's container.
type Instance struct {
	ContextID   string
	ContainerID string
	// Socket is the path, on this host, of the unix socket the container's
	// Jupyter server listens on.
	Socket string
	Labels map[string]string
	// Running is set by List: whether the container runs.
	Running bool
}

// Runtime runs containers for contexts. Errors carry CodeDockerUnavailable
// when the engine cannot be reached.
type Runtime interface {
	// Start creates and starts a context's container.
	Start(ctx context.Context, spec Spec) (Instance, error)
	// Wait blocks until the container is no longer running, and then says
	// how it ended. An error means the wait itself failed (the engine went
	// away, ctx ended): the container may well still run.
	Wait(ctx context.Context, inst Instance) (exit string, err error)
	// Seal keeps the container from changing what the daemon connects to
	// from now on: its server's socket is made, and code that replaced it
	// (with a link to a socket of the host's, say) would lead the daemon
	// there.
	Seal(inst Instance) error
	// OpenEgress lets the container reach the public internet through the
	// daemon's filtering proxy, and returns the environment that points
	// programs at it. It may be called again for the same container, after
	// a restart of the daemon.
	OpenEgress(ctx context.Context, inst Instance) (env map[string]string, err error)
	// Remove removes the container and all it made, egress included; a
	// container that is already gone counts as removed.
	Remove(ctx context.Context, inst Instance) error
	// List returns the containers this daemon owns, running or not.
	List(ctx context.Context) ([]Instance, error)
	// HasImage reports whether the engine has image.
	HasImage(ctx context.Context, image string) (bool, error)
	// Ping checks that the engine answers.
	Ping(ctx context.Context) error
	// Exec runs a process in the running container, beside its kernel, and
	// returns its exit code once it has ended and its output is copied.
	// When ctx ends first, Exec kills the process and its process group,
	// and returns ctx's error: the engine itself would let it run on.
	Exec(ctx context.Context, inst Instance, spec ExecSpec) (exitCode int, err error)
}

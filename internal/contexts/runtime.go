package contexts

import (
	"context"
	"net"
)

// Spec is what a context's instance is made from.
type Spec struct {
	ContextID string
	Image     string
	Token     string // the Jupyter server's token
	// Labels describe the context on its instance, so it can be found again.
	Labels map[string]string
	// Cmd, when set, replaces what the image runs (its Jupyter server) as
	// the instance's first process: for instances that are not contexts.
	Cmd []string
}

// LabelRole marks an instance that is not a context, with what it is, so
// that recovery never takes it for one.
const LabelRole = "sandboxd.role"

// Instance is where a context's Jupyter server and kernel run: a
// container, a pod.
type Instance struct {
	ContextID string
	// ID is the runtime's own name for it (a container id), for logs.
	ID     string
	Labels map[string]string
	// Running is set by List: whether the instance runs.
	Running bool
}

// Runtime runs instances for contexts. It says nothing of how: a Manager
// reaches an instance's server through Dial, learns of its end through
// Watch, and keeps what outlives a run of the daemon in the Store. Errors
// carry CodeRuntimeUnavailable when the runtime cannot be reached.
type Runtime interface {
	// Start makes and starts a context's instance.
	Start(ctx context.Context, spec Spec) (Instance, error)
	// Dial connects to the instance's Jupyter server. The connection leads
	// to the server the instance started with, whatever code in the
	// instance does to redirect it since.
	Dial(ctx context.Context, inst Instance) (net.Conn, error)
	// Watch calls ended, once, when inst stops, with how it ended, and
	// returns at once. An instance that is removed ends too. Nothing is
	// called after the runtime closes.
	Watch(inst Instance, ended func(exit string))
	// OpenEgress lets the instance reach the public internet through the
	// daemon's filtering proxy, and returns the environment that points
	// programs at it. It may be called again for the same instance, after
	// a restart of the daemon.
	OpenEgress(ctx context.Context, inst Instance) (env map[string]string, err error)
	// Exec runs a process in the running instance, beside its kernel, and
	// returns its exit code once it has ended and its output is copied.
	// When ctx ends first, Exec kills the process and its process group,
	// and returns ctx's error.
	Exec(ctx context.Context, inst Instance, spec ExecSpec) (exitCode int, err error)
	// Remove removes the instance and all it made, egress included; one
	// that is already gone counts as removed.
	Remove(ctx context.Context, inst Instance) error
	// List returns the instances this daemon owns, running or not.
	List(ctx context.Context) ([]Instance, error)
	// HasImage reports whether the runtime can start image without
	// fetching it.
	HasImage(ctx context.Context, image string) (bool, error)
	// Ping checks that the runtime answers.
	Ping(ctx context.Context) error
	// Store is where the records of the contexts are kept, so that a later
	// run of the daemon can take their instances over; nil keeps none.
	Store() Store
}

package contexts

import (
	"context"
	"fmt"
	"net"

	"github.com/sandboxd/sandboxd/internal/kernel"
)

// Kernel is a context's kernel as the Manager drives it.
type Kernel interface {
	ID() string
	// Execute runs a request and returns its result; see kernel.Kernel.
	Execute(ctx context.Context, r kernel.Request) (kernel.Result, error)
	Interrupt(ctx context.Context) error
	// Restart restarts the kernel, losing its state; what runs ends with
	// kernel.ErrKernelDied.
	Restart(ctx context.Context) error
	// Ready returns once the kernel answers.
	Ready(ctx context.Context) error
	// Shutdown stops the kernel on its server, which goes on running the
	// others, and closes the connection.
	Shutdown(ctx context.Context) error
	Close() error
}

// Kernels starts the kernel of a new instance, and finds the one on an
// instance a previous run of the daemon started.
type Kernels interface {
	// Start waits for the Jupyter server dial reaches to answer, and starts
	// a kernel of the kernelspec name on it. It gives up when stopped is
	// closed: the instance has ended.
	Start(ctx context.Context, dial kernel.DialFunc, token, name string, stopped <-chan struct{}, opts kernel.Options) (Kernel, error)
	// Find connects to the kernel id on the server, or to its only kernel
	// when id is "", without waiting for it to answer; busy says it is
	// running a cell.
	Find(ctx context.Context, dial kernel.DialFunc, token, id string, opts kernel.Options) (k Kernel, busy bool, err error)
	// Serve waits for the Jupyter server dial reaches to answer. It gives
	// up when stopped is closed.
	Serve(ctx context.Context, dial kernel.DialFunc, token string, stopped <-chan struct{}) error
	// Specs returns the names of the kernelspecs the server can start.
	Specs(ctx context.Context, dial kernel.DialFunc, token string) ([]string, error)
}

// jupyter is Kernels on a Jupyter server's REST and websocket API.
type jupyter struct{}

var (
	_ Kernel  = (*kernel.Kernel)(nil)
	_ Kernels = jupyter{}
)

func (jupyter) Start(ctx context.Context, dial kernel.DialFunc, token, name string, stopped <-chan struct{}, opts kernel.Options) (Kernel, error) {
	server := kernel.NewServer(dial, token)
	if err := server.WaitReady(ctx, stopped); err != nil {
		server.Close()
		return nil, err
	}
	k, err := kernel.Start(ctx, server, name, opts)
	if err != nil {
		server.Close()
		return nil, err
	}
	return k, nil
}

func (jupyter) Find(ctx context.Context, dial kernel.DialFunc, token, id string, opts kernel.Options) (Kernel, bool, error) {
	server := kernel.NewServer(dial, token)
	kernels, err := server.Kernels(ctx)
	if err == nil && id == "" && len(kernels) != 1 {
		err = fmt.Errorf("%d kernels on its server, want 1", len(kernels))
	}
	if err != nil {
		server.Close()
		return nil, false, err
	}
	for _, k := range kernels {
		if id == "" || k.ID == id {
			return kernel.Connect(server, k.ID, opts), k.ExecutionState == "busy", nil
		}
	}
	server.Close()
	return nil, false, fmt.Errorf("no kernel %s on its server", id)
}

func (jupyter) Serve(ctx context.Context, dial kernel.DialFunc, token string, stopped <-chan struct{}) error {
	server := kernel.NewServer(dial, token)
	defer server.Close()
	return server.WaitReady(ctx, stopped)
}

func (jupyter) Specs(ctx context.Context, dial kernel.DialFunc, token string) ([]string, error) {
	server := kernel.NewServer(dial, token)
	defer server.Close()
	return server.KernelSpecs(ctx)
}

// kernelOptions bound s's kernel by the Config, and tell s of its restarts.
func (m *Manager) kernelOptions(s *liveContext) kernel.Options {
	return kernel.Options{
		MaxOutput:      m.cfg.MaxOutput,
		InterruptGrace: m.cfg.InterruptGrace,
		ReadyTimeout:   m.cfg.CreateTimeout,
		OnRestart:      s.kernelRestarted,
		Log:            m.log,
	}
}

// dialer reaches inst's Jupyter server.
func (m *Manager) dialer(inst Instance) kernel.DialFunc {
	return func(ctx context.Context) (net.Conn, error) { return m.rt.Dial(ctx, inst) }
}

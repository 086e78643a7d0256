// Command sandboxd-bench measures a running sandboxd: how fast it creates
// contexts (from its warm pool and cold), how much an execution costs over
// a bare Jupyter kernel in the same container, how fast it returns large
// output, its throughput, and its memory.
//
//	sandboxd-bench [--url http://127.0.0.1:8080] [--socket-dir /run/sandboxd] [--json]
//	               [--kubeconfig FILE [--kube-namespace NS] [--kube-transport ip|exec]]
//	               [--calls 300] [--parallel 8] [--duration 20s] [--burst 20]
//	sandboxd-bench --oneshot [--url …] [--calls 300] [--oneshot-clients 4] [--oneshot-duration 1m] [--dify-key KEY]
//
// It prints progress to stderr and the results to stdout, as a table or,
// with --json, as one JSON object so that runs can be compared. Everything
// it creates is deleted at the end, also on Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/sandboxd/sandboxd/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "sandboxd-bench:", err)
		os.Exit(1)
	}
}

type config struct {
	URL       string
	SocketDir string
	// Kubeconfig, KubeNamespace and KubeTransport say where the pods of a
	// daemon run with --platform kubernetes are, and how it reaches them.
	Kubeconfig    string
	KubeNamespace string
	KubeTransport string
	JSON          bool
	Calls         int
	Parallel      int
	Duration      time.Duration
	Burst         int
	// OneShot measures one-shot runs instead of contexts.
	OneShot         bool
	OneShotClients  int
	OneShotDuration time.Duration
	APIKey          string
}

func parseConfig(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("sandboxd-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:8080", "base URL of the sandboxd to measure")
	fs.StringVar(&c.SocketDir, "socket-dir", "/run/sandboxd", "the daemon's --socket-dir as seen from here, to reach kernels directly for the floor; when a context's socket is not under it, the path on its container's label is used, and a context reached through exec is reached so here too")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "for a daemon run with --platform kubernetes: its --kubeconfig, to reach the pods' servers directly for the floor; empty measures a daemon on Docker")
	fs.StringVar(&c.KubeNamespace, "kube-namespace", "", "the daemon's --kube-namespace")
	fs.StringVar(&c.KubeTransport, "kube-transport", "ip", "the daemon's --kube-transport: the floor reaches pods' servers the same way")
	fs.BoolVar(&c.JSON, "json", false, "print the results as JSON")
	fs.IntVar(&c.Calls, "calls", 300, "sequential executions measured for latency, and as many for the floor")
	fs.IntVar(&c.Parallel, "parallel", 8, "contexts executing at once for throughput")
	fs.DurationVar(&c.Duration, "duration", 20*time.Second, "how long each throughput run lasts")
	fs.IntVar(&c.Burst, "burst", 20, "contexts created back to back in the burst")
	fs.BoolVar(&c.OneShot, "oneshot", false, "measure one-shot runs instead (RAGFlow's /run and Dify's /v1/sandbox/run): their latency against the same code's execute in a context that exists, over --calls each, then --oneshot-clients running back to back for --oneshot-duration")
	fs.IntVar(&c.OneShotClients, "oneshot-clients", 4, "clients running one-shot runs back to back")
	fs.DurationVar(&c.OneShotDuration, "oneshot-duration", time.Minute, "how long the clients run one-shot runs")
	fs.StringVar(&c.APIKey, "dify-key", "", "X-Api-Key sent with Dify's runs")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	case c.Calls < 1, c.Parallel < 1, c.Burst < 1, c.OneShotClients < 1:
		return c, errors.New("--calls, --parallel, --burst and --oneshot-clients must be at least 1")
	case c.Duration <= 0:
		return c, errors.New("--duration must be positive")
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	counter := &countingTransport{base: newTransport(max(cfg.Parallel, cfg.OneShotClients))}
	httpClient := &http.Client{Transport: counter}
	b := &bench{
		cfg:     cfg,
		api:     client.New(cfg.URL, client.WithHTTPClient(httpClient)),
		http:    httpClient,
		bytes:   counter,
		stderr:  stderr,
		session: "sandboxd-bench-" + uuid.NewString()[:8],
		live:    map[string]bool{},
	}
	if s, err := connectServers(ctx, cfg); err != nil {
		b.serversErr = err
	} else {
		b.servers = s
		defer s.Close()
	}

	var rep interface {
		writeJSON(io.Writer) error
		writeTable(io.Writer) error
	}
	if cfg.OneShot {
		rep, err = b.runOneShot(ctx)
	} else {
		rep, err = b.run(ctx)
	}
	// Clean up even after Ctrl-C: ctx is done then, so use one of our own.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if cerr := b.cleanup(cctx); cerr != nil {
		err = errors.Join(err, fmt.Errorf("clean up: %w", cerr))
	}
	if err != nil {
		return err
	}
	if cfg.JSON {
		return rep.writeJSON(stdout)
	}
	return rep.writeTable(stdout)
}

// bench holds what the measurements share.
type bench struct {
	cfg     config
	api     *client.Client
	http    *http.Client
	bytes   *countingTransport
	stderr  io.Writer
	session string // session_name of every context we create, to find strays

	servers    servers // nil when serversErr says why
	serversErr error

	noPool bool // the server has no pool endpoint

	mu   sync.Mutex
	live map[string]bool // contexts created and not yet deleted
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.stderr, "sandboxd-bench: "+format+"\n", args...)
}

// create creates a python context and remembers it for cleanup.
func (b *bench) create(ctx context.Context) (*client.Context, time.Duration, error) {
	start := time.Now()
	c, err := b.api.CreateContext(ctx, client.CreateRequest{Language: "python", SessionName: b.session})
	took := time.Since(start)
	if err != nil {
		return nil, took, err
	}
	b.mu.Lock()
	b.live[c.ID] = true
	b.mu.Unlock()
	return c, took, nil
}

func (b *bench) remove(ctx context.Context, id string) error {
	err := b.api.DeleteContext(ctx, id)
	if err == nil || client.IsCode(err, client.CodeContextNotFound) {
		b.mu.Lock()
		delete(b.live, id)
		b.mu.Unlock()
		return nil
	}
	return err
}

// cleanup deletes every context this run made: those it knows, and any
// with its session name, such as one whose create was cut off by Ctrl-C
// after the server had made it.
func (b *bench) cleanup(ctx context.Context) error {
	var errs []error
	all, err := b.api.ListContexts(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	b.mu.Lock()
	for _, c := range all {
		if c.SessionName == b.session {
			b.live[c.ID] = true
		}
	}
	ids := make([]string, 0, len(b.live))
	for id := range b.live {
		ids = append(ids, id)
	}
	b.mu.Unlock()
	if len(ids) > 0 {
		b.logf("deleting %d contexts", len(ids))
	}
	for _, id := range ids {
		if err := b.remove(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// newTransport makes the transport of the API client: enough idle
// connections that parallel callers never reconnect, which would be
// measured as the daemon's cost.
func newTransport(parallel int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = max(64, 2*parallel)
	t.MaxIdleConns = t.MaxIdleConnsPerHost
	return t
}

// countingTransport counts the bytes of the response bodies read through it.
type countingTransport struct {
	base http.RoundTripper
	n    atomic.Int64
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err == nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: &t.n}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

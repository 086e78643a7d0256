// Command sandboxd serves a local code interpreter: each context is a
// container with a Jupyter kernel, driven over HTTP.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	units "github.com/docker/go-units"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/docker"
	"github.com/sandboxd/sandboxd/internal/egress"
	"github.com/sandboxd/sandboxd/internal/httpapi"
	"github.com/sandboxd/sandboxd/internal/mcp"
	"github.com/sandboxd/sandboxd/internal/oneshot"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "sandboxd:", err)
		os.Exit(1)
	}
}

// config is everything sandboxd can be told on its command line or, for
// each flag, in its SANDBOXD_* environment variable.
type config struct {
	Listen         string
	Name           string
	Image          string
	RImage         string
	BashImage      string
	JSImage        string
	SocketDir      string
	Transport      string
	StateDir       string
	Network        string
	Runtime        string
	Platform       string
	Kube           kubeConfig
	AllowEgress    bool
	EgressPorts    portList
	EgressMaxConns int
	EgressDeny     prefixList
	Memory         byteSize
	CPUs           float64
	Pids           int64
	NoFile         int64
	MaxFileSize    byteSize
	TmpSize        byteSize
	WorkspaceSize  workspaceSize
	WorkspaceDir   string
	DefaultTimeout time.Duration
	MaxTimeout     time.Duration
	CreateTimeout  time.Duration
	MaxOutput      byteSize
	MaxBody        byteSize
	MaxUpload      byteSize
	ShutdownGrace  time.Duration
	Pool           poolSizes
	PoolMaxAge     time.Duration
	MaxContexts    int
	FullWait       time.Duration
	APIKey         string
	APIKeyFile     string
	BasicAuth      string
	AllowedHosts   string
	Insecure       bool
	KeepContexts   bool
	IdleTTL        time.Duration
	HistoryEntries int
	HistoryBytes   byteSize
	MCPSessions    mcp.SessionLimits
	Runners        poolSizes
	RunTimeout     time.Duration
	RunnerWait     time.Duration
	LogFormat      string
	LogOutput      string
	LogLevel       slog.Level
}

// Bounds on the artifacts of one one-shot run, as RAGFlow's executor
// manager has them.
const (
	maxArtifacts     = 10
	maxArtifactBytes = 10 << 20
)

// byteSize is a flag value such as 1g or 512m.
type byteSize int64

func (b *byteSize) String() string { return units.BytesSize(float64(*b)) }
func (b *byteSize) Set(s string) error {
	n, err := units.RAMInBytes(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

// workspaceSize is the --workspace-size flag: a size, 0, or auto (-1).
type workspaceSize int64

// autoWorkspaceSize is the size of auto where sized workspaces can be made.
const autoWorkspaceSize = 10 << 30

func (w *workspaceSize) String() string {
	if *w < 0 {
		return "auto"
	}
	return units.BytesSize(float64(*w))
}

func (w *workspaceSize) Set(s string) error {
	if s == "auto" {
		*w = -1
		return nil
	}
	n, err := units.RAMInBytes(s)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is neither a size nor auto", s)
	}
	*w = workspaceSize(n)
	return nil
}

// poolSizes is a flag value such as python=2,r=1: how many ready kernels
// to keep per language.
type poolSizes map[string]int

func (p *poolSizes) String() string {
	var parts []string
	for _, lang := range slices.Sorted(maps.Keys(*p)) {
		parts = append(parts, fmt.Sprintf("%s=%d", lang, (*p)[lang]))
	}
	return strings.Join(parts, ",")
}

func (p *poolSizes) Set(s string) error {
	sizes := poolSizes{}
	if s == "none" {
		*p = sizes
		return nil
	}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		lang, n, ok := strings.Cut(part, "=")
		size, err := strconv.Atoi(n)
		if !ok || err != nil || size < 0 {
			return fmt.Errorf("%q is not language=size", part)
		}
		sizes[lang] = size
	}
	*p = sizes
	return nil
}

// portList is a flag value such as 80,443.
type portList []uint16

func (p *portList) String() string {
	s := make([]string, len(*p))
	for i, port := range *p {
		s[i] = strconv.Itoa(int(port))
	}
	return strings.Join(s, ",")
}

func (p *portList) Set(s string) error {
	ports := portList{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		n, err := strconv.ParseUint(part, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("%q is not a port", part)
		}
		ports = append(ports, uint16(n))
	}
	*p = ports
	return nil
}

// prefixList is a flag value such as 203.0.113.7,198.51.100.0/24: ranges
// in CIDR form, or single addresses.
type prefixList []netip.Prefix

func (p *prefixList) String() string {
	s := make([]string, len(*p))
	for i, prefix := range *p {
		s[i] = prefix.String()
	}
	return strings.Join(s, ",")
}

func (p *prefixList) Set(s string) error {
	prefixes := prefixList{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(part)
		if err != nil {
			ip, aerr := netip.ParseAddr(part)
			if aerr != nil {
				return fmt.Errorf("%q is neither an address nor a CIDR range", part)
			}
			prefix = netip.PrefixFrom(ip, ip.BitLen())
		}
		prefixes = append(prefixes, prefix.Masked())
	}
	*p = prefixes
	return nil
}

// parseConfig reads flags, then fills every flag not given from its
// environment variable: --max-timeout from SANDBOXD_MAX_TIMEOUT, and so on.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	c := config{EgressPorts: portList(egress.DefaultPorts), WorkspaceSize: -1, Memory: 1 << 30, TmpSize: 256 << 20, MaxFileSize: 1 << 30, MaxOutput: 10 << 20, MaxBody: 10 << 20, HistoryBytes: contexts.DefaultHistoryBytes, Pool: poolSizes{"python": 2}, Runners: poolSizes{"python": 2, "javascript": 1}}
	fs := flag.NewFlagSet("sandboxd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:8080", "address to serve HTTP on")
	fs.StringVar(&c.Name, "name", "sandboxd", "name of this daemon on its containers; daemons sharing an engine need different names")
	fs.StringVar(&c.Image, "image", "sandboxd/python-kernel:latest", "image of Python contexts")
	fs.StringVar(&c.RImage, "r-image", "sandboxd/r-kernel:latest", "image of R contexts")
	fs.StringVar(&c.BashImage, "bash-image", "sandboxd/bash-kernel:latest", "image of bash contexts")
	fs.StringVar(&c.JSImage, "javascript-image", "sandboxd/javascript-kernel:latest", "image of JavaScript (Node.js) contexts")
	fs.StringVar(&c.SocketDir, "socket-dir", "/run/sandboxd", "directory for the kernels' unix sockets where the engine shares it (--transport socket): the same path on the engine's host when sandboxd runs in a container")
	fs.StringVar(&c.Transport, "transport", docker.TransportAuto, "how sandboxd reaches a context's Jupyter server: socket (a unix socket in --socket-dir, which the engine mounts into the container), exec (a relay over the engine's exec API; needs no shared path: Docker Desktop, Podman, remote engines), or auto: socket where the engine sees --socket-dir, exec elsewhere")
	fs.StringVar(&c.StateDir, "state-dir", "", "directory, read by sandboxd alone, for the records that let a restarted daemon take its contexts over; empty is --socket-dir")
	fs.StringVar(&c.Network, "network", "none", "network of context containers: none, or the name of a user-defined network (docker network create), which every context then reaches unfiltered; host, bridge, default and container:<id> are refused")
	fs.StringVar(&c.Runtime, "runtime", "", "OCI runtime of context containers as registered in the engine: empty for its default (runc), runsc for gVisor")
	fs.StringVar(&c.Platform, "platform", "docker", "where contexts run: docker (a container per context on the Docker engine) or kubernetes (a pod per context; see the --kube-* flags)")
	c.Kube.flags(fs)
	fs.BoolVar(&c.AllowEgress, "allow-egress", false, `let contexts created with "network": true reach the public internet over HTTP(S), through a proxy in the daemon that refuses private, loopback and link-local addresses`)
	fs.Var(&c.EgressPorts, "egress-ports", "ports a context may connect to through the egress proxy, comma-separated; others are refused with 403")
	fs.IntVar(&c.EgressMaxConns, "egress-max-conns", egress.DefaultMaxConns, "most connections a context may have open through the egress proxy at once (tunnels, requests and idle kept-alive ones); more are refused with 429")
	fs.Var(&c.EgressDeny, "egress-deny", "addresses or CIDR ranges the egress proxy refuses besides private ones, comma-separated: e.g. the host's public address where a router forwards it back, or the host's addresses when they cannot be read")
	fs.Var(&c.Memory, "memory", "memory limit of a context, /tmp included")
	fs.Float64Var(&c.CPUs, "cpus", 1, "CPU limit of a context, in cores")
	fs.Int64Var(&c.Pids, "pids", 256, "process limit of a context")
	fs.Int64Var(&c.NoFile, "nofile", 4096, "open file limit of a context")
	fs.Var(&c.MaxFileSize, "max-file-size", "largest file a context may write")
	fs.Var(&c.TmpSize, "tmp-size", "size of a context's /tmp (counts against its memory)")
	fs.Var(&c.WorkspaceSize, "workspace-size", "size of a context's /workspace, as a file system of its own (needs root on the engine's host, loop devices and e2fsprogs); auto is 10g where that can be done and unbounded elsewhere; 0 is unbounded")
	fs.StringVar(&c.WorkspaceDir, "workspace-dir", "/var/lib/sandboxd/workspaces", "where the file system images of --workspace-size live, in a folder per --name")
	fs.DurationVar(&c.DefaultTimeout, "default-timeout", 30*time.Second, "execution timeout when a request gives none")
	fs.DurationVar(&c.MaxTimeout, "max-timeout", time.Hour, "largest execution timeout a request may ask for")
	fs.DurationVar(&c.CreateTimeout, "create-timeout", 2*time.Minute, "limit on making a context, up to a ready kernel")
	fs.Var(&c.MaxOutput, "max-output", "cap on all the output of one execution together (stdout, stderr, rich results, traceback), and on each of stdout and stderr of one command")
	fs.Var(&c.MaxBody, "max-body", "cap on request bodies")
	c.MaxUpload = httpapi.DefaultMaxUpload
	fs.Var(&c.MaxUpload, "max-upload", "cap on file uploads, which --max-body does not cap")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", 30*time.Second, "how long running requests may finish after SIGTERM")
	fs.Var(&c.Pool, "pool", "ready kernels to keep per language, as python=2,r=1; 0 or none for a language starts its contexts cold")
	fs.DurationVar(&c.PoolMaxAge, "pool-max-age", 30*time.Minute, "how long a kernel may wait in the pool before a fresh one replaces it; 0 is no limit")
	fs.IntVar(&c.MaxContexts, "max-contexts", 50, "most containers that may exist at once, a context of its own or a sandbox of any number of contexts; more are refused with 429; 0 is no limit")
	fs.DurationVar(&c.FullWait, "full-wait", 0, "how long a create waits for room when --max-contexts contexts exist; 0 refuses it at once")
	fs.StringVar(&c.APIKey, "api-key", "", "require Authorization: Bearer with this key on every request but /health")
	fs.StringVar(&c.APIKeyFile, "api-key-file", "", "file of API keys, one per line, each accepted like --api-key")
	fs.StringVar(&c.BasicAuth, "basic-auth", "", "require HTTP Basic credentials user:password (or an API key)")
	fs.StringVar(&c.AllowedHosts, "allowed-hosts", "", "Host header names accepted besides localhost when no auth is set, comma-separated; * for any")
	fs.DurationVar(&c.IdleTTL, "idle-ttl", 30*time.Minute, "remove a context after this long without an execution, and the longest and default idle timeout of a sandbox; 0 keeps contexts until deleted")
	fs.IntVar(&c.HistoryEntries, "history-entries", contexts.DefaultHistoryEntries, "most entries kept in each context's history of executions and commands; the oldest are dropped first")
	fs.Var(&c.HistoryBytes, "history-bytes", "cap on each context's history, its entries' texts and results together; one larger entry is cut to fit")
	fs.IntVar(&c.MCPSessions.Max, "mcp-max-sessions", 256, "most MCP sessions kept at once on /mcp; more are refused with 429; 0 is no limit")
	fs.DurationVar(&c.MCPSessions.Idle, "mcp-session-idle", 30*time.Minute, "end an MCP session after this long without a request; 0 keeps it until the client ends it")
	fs.Var(&c.Runners, "runners", "warm runner containers to keep per language for one-shot runs (RAGFlow's /run, Dify's /v1/sandbox/run), as python=2,javascript=1: as many runs of a language run at once; none turns those routes off")
	fs.DurationVar(&c.RunTimeout, "run-timeout", 10*time.Second, "timeout of a one-shot run (RAGFlow and Dify send none)")
	fs.DurationVar(&c.RunnerWait, "runner-wait", 30*time.Second, "how long a one-shot run waits for a free runner before it is refused as busy")
	fs.BoolVar(&c.KeepContexts, "keep-contexts", false, "on SIGTERM, leave contexts running for the next run to take over, instead of removing them")
	fs.BoolVar(&c.Insecure, "insecure", false, "allow listening on a non-loopback address without auth")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogOutput, "log-output", "stderr", "where the logs go: stderr or stdout")
	fs.TextVar(&c.LogLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := "SANDBOXD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" && !given[f.Name] {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	switch {
	case c.LogFormat != "text" && c.LogFormat != "json":
		return c, fmt.Errorf("--log-format must be text or json, not %q", c.LogFormat)
	case c.LogOutput != "stderr" && c.LogOutput != "stdout":
		return c, fmt.Errorf("--log-output must be stderr or stdout, not %q", c.LogOutput)
	case c.DefaultTimeout <= 0 || c.MaxTimeout < c.DefaultTimeout:
		return c, errors.New("--default-timeout must be positive and no more than --max-timeout")
	case c.TmpSize >= c.Memory:
		return c, errors.New("--tmp-size must be less than --memory: /tmp counts against it")
	case c.EgressMaxConns < 1:
		return c, errors.New("--egress-max-conns must be at least 1")
	case c.HistoryEntries < 1 || c.HistoryBytes < 1:
		return c, errors.New("--history-entries and --history-bytes must be at least 1")
	case c.RunTimeout <= 0 || c.RunnerWait < 0:
		return c, errors.New("--run-timeout must be positive and --runner-wait not negative")
	case len(c.EgressPorts) == 0:
		return c, errors.New("--egress-ports must name a port; leave out --allow-egress to give contexts no network")
	case c.Platform != "docker" && c.Platform != "kubernetes":
		return c, fmt.Errorf("--platform must be docker or kubernetes, not %q", c.Platform)
	}
	if c.Platform == "kubernetes" && !given["runners"] && getenv("SANDBOXD_RUNNERS") == "" {
		// One-shot runners are reached over a unix socket, which pods do
		// not share with the daemon.
		c.Runners = poolSizes{}
	}
	if err := checkNetwork(c.Network); err != nil {
		return c, err
	}
	return c, nil
}

// checkNetwork refuses the network modes that would put a context beside
// the host or another container: host shares the host's network stack (its
// loopback services included), container:<id> another container's, and the
// default bridge reaches every container on it. A mode with a colon is
// never a network name.
func checkNetwork(network string) error {
	switch {
	case network == "":
		return errors.New("--network must not be empty: none, or a user-defined network's name")
	case network == "host", network == "bridge", network == "default", strings.Contains(network, ":"):
		return fmt.Errorf("--network %s is refused: use none, or a user-defined network made with docker network create", network)
	}
	return nil
}

// auth gathers the credentials the configuration names, reading key files.
func (c config) auth() (httpapi.Auth, error) {
	var a httpapi.Auth
	if c.APIKey != "" {
		a.APIKeys = append(a.APIKeys, c.APIKey)
	}
	if c.APIKeyFile != "" {
		b, err := os.ReadFile(c.APIKeyFile)
		if err != nil {
			return a, fmt.Errorf("--api-key-file: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if key := strings.TrimSpace(line); key != "" && !strings.HasPrefix(key, "#") {
				a.APIKeys = append(a.APIKeys, key)
			}
		}
		if len(a.APIKeys) == 0 {
			return a, fmt.Errorf("--api-key-file %s holds no key", c.APIKeyFile)
		}
	}
	if c.BasicAuth != "" {
		if !strings.Contains(c.BasicAuth, ":") {
			return a, errors.New("--basic-auth must be user:password")
		}
		a.Basic = append(a.Basic, c.BasicAuth)
	}
	return a, nil
}

// loopback reports whether addr (host:port) listens on this machine alone.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "version" {
		fmt.Fprintln(stdout, "sandboxd", version())
		return nil
	}
	if len(args) > 0 && args[0] == "mcp" {
		return runMCP(ctx, args[1:], getenv, os.Stdin, stdout, stderr)
	}
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	auth, err := cfg.auth()
	if err != nil {
		return err
	}
	if !loopback(cfg.Listen) && !auth.Enabled() && !cfg.Insecure {
		return fmt.Errorf("--listen %s is reachable from other machines: set --api-key or --basic-auth, or --insecure to serve it without auth", cfg.Listen)
	}
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	logOut := stderr
	if cfg.LogOutput == "stdout" {
		logOut = stdout
	}
	var log *slog.Logger
	if cfg.LogFormat == "json" {
		log = slog.New(slog.NewJSONHandler(logOut, opts))
	} else {
		log = slog.New(slog.NewTextHandler(logOut, opts))
	}

	rt, err := newPlatform(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer rt.Close()

	langs := []contexts.Language{contexts.Python(cfg.Image), contexts.R(cfg.RImage), contexts.Bash(cfg.BashImage), contexts.JavaScript(cfg.JSImage)}
	for name := range cfg.Pool {
		if !slices.ContainsFunc(langs, func(l contexts.Language) bool { return l.Name == name }) {
			return fmt.Errorf("--pool: unknown language %q", name)
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mgr := contexts.NewManager(rt, contexts.Config{
		Languages:      langs,
		CreateTimeout:  cfg.CreateTimeout,
		DefaultTimeout: cfg.DefaultTimeout,
		MaxTimeout:     cfg.MaxTimeout,
		MaxOutput:      int(cfg.MaxOutput),
		MaxContexts:    cfg.MaxContexts,
		FullWait:       cfg.FullWait,
		PoolSizes:      cfg.Pool,
		PoolMaxAge:     cfg.PoolMaxAge,
		AllowEgress:    cfg.AllowEgress,
		IdleTTL:        cfg.IdleTTL,
		HistoryEntries: cfg.HistoryEntries,
		HistoryBytes:   int(cfg.HistoryBytes),
	}, log, contexts.NewMetrics(reg))

	// Listen first: a daemon that cannot serve must not take over, nor
	// remove, what a previous run left.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	// Recover only lists what the previous run left: its contexts are
	// taken over in the background, while the daemon serves.
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	replicas, err := rt.Replicas(pctx, mgr, advertiseURL(cfg, getenv, ln.Addr()))
	if err == nil && replicas != nil {
		// Before Recover: no other replica may take this one's contexts
		// over while it does.
		err = replicas.Renew(pctx)
	}
	if err != nil {
		if replicas != nil {
			replicas.Close()
		}
		cancel()
		ln.Close()
		return fmt.Errorf("replicas: %w", err)
	}
	if err := mgr.Recover(pctx); err != nil {
		// Keep serving: /readyz tells when the engine is back.
		log.Warn("could not clean up after a previous run", "error", err)
	} else if err := rt.AfterRecover(pctx); err != nil {
		log.Warn("could not clean up after a previous run", "error", err)
	}
	cancel()
	mgr.Start()
	var placement httpapi.Placement
	if replicas != nil {
		placement = replicas
		replicas.Start()
	}
	// Before the Manager closes: it must take no context over meanwhile.
	closeReplicas := func() {
		if replicas != nil {
			replicas.Close()
		}
	}
	// After: the others may take its contexts over.
	leaveReplicas := func() {
		if replicas == nil {
			return
		}
		if err := replicas.Leave(); err != nil {
			log.Warn("could not tell the other replicas that this one ends", "error", err)
		}
	}
	runners, err := oneshot.New(oneshot.Config{
		Runtime:   rt,
		Languages: langs,
		Sizes:     cfg.Runners,
		Limits:    oneshot.Limits{MaxOutput: int(cfg.MaxOutput), MaxArtifacts: maxArtifacts, MaxArtifactBytes: maxArtifactBytes, MaxResultBytes: int(cfg.MaxOutput)},
		Wait:      cfg.RunnerWait,
		Log:       log,
	})
	if err != nil {
		closeReplicas()
		mgr.Close()
		leaveReplicas()
		return fmt.Errorf("--runners: %w", err)
	}
	// After Recover: it removes the runners a previous run left.
	runners.Start()
	var oneShot httpapi.Config
	if runners.Any() {
		oneShot.OneShot, oneShot.OneShotTimeout = runners, cfg.RunTimeout
	}
	// Requests run under base, which ends after the graceful shutdown:
	// Shutdown does not wait for websockets, so they are told this way.
	base, endBase := context.WithCancel(context.Background())
	defer endBase()
	mcpHandler, auth := newMCPHandler(log, ln.Addr(), auth, int64(cfg.MaxBody), cfg.MCPSessions)
	srv := &http.Server{
		BaseContext: func(net.Listener) context.Context { return base },
		Handler: httpapi.NewHandler(log, mgr, httpapi.Config{
			MaxBodyBytes:   int64(cfg.MaxBody),
			MaxUploadBytes: int64(cfg.MaxUpload),
			Registry:       reg,
			Auth:           auth,
			AllowedHosts:   strings.Split(cfg.AllowedHosts, ","),
			MCP:            mcpHandler,
			OneShot:        oneShot.OneShot,
			OneShotTimeout: oneShot.OneShotTimeout,
			Placement:      placement,
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(mcpHandler.Close)
	// Event streams never end of themselves: Shutdown would wait for them.
	srv.RegisterOnShutdown(mgr.EndEvents)
	log.Info("sandboxd listening", "addr", ln.Addr().String(), "version", version(), "image", cfg.Image)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		closeReplicas()
		runners.Close()
		mgr.Close()
		leaveReplicas()
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing running requests", "grace", cfg.ShutdownGrace)
	sctx, scancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer scancel()
	shutdownErr := srv.Shutdown(sctx)
	endBase()
	closeReplicas()
	// Runners hold nothing worth keeping: they go in any case.
	if err := runners.Close(); err != nil {
		log.Warn("could not remove every one-shot runner", "error", err)
	}
	if cfg.KeepContexts {
		log.Info("leaving contexts running for the next run")
		mgr.Detach()
	} else {
		log.Info("removing contexts")
		shutdownErr = errors.Join(shutdownErr, mgr.Close())
	}
	leaveReplicas()
	return shutdownErr
}

package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandboxd/sandboxd/client"
	"github.com/sandboxd/sandboxd/internal/httpapi"
	"github.com/sandboxd/sandboxd/internal/mcp"
)

// runMCP is `sandboxd mcp`: it serves the MCP tools on stdin and stdout,
// for MCP clients that start their servers themselves, over the HTTP API
// of the daemon at --url. Logs go to stderr: stdout is the protocol's.
func runMCP(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sandboxd mcp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:8080", "URL of the sandboxd daemon")
	key := fs.String("api-key", "", "API key of the daemon, sent as Authorization: Bearer")
	basic := fs.String("basic-auth", "", "HTTP Basic credentials user:password of the daemon")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("mcp: unexpected arguments: %q", fs.Args())
	}
	// As for the daemon's flags: SANDBOXD_URL, SANDBOXD_API_KEY and
	// SANDBOXD_BASIC_AUTH fill the flags not given, so that one environment
	// can serve the daemon and its MCP server alike.
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv("SANDBOXD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))); v != "" && !given[f.Name] {
			f.Value.Set(v) // string flags: cannot fail
		}
	})

	var opts []client.Option
	if *key != "" {
		opts = append(opts, client.WithAPIKey(*key))
	}
	if *basic != "" {
		user, pass, ok := strings.Cut(*basic, ":")
		if !ok {
			return errors.New("mcp: --basic-auth must be user:password")
		}
		opts = append(opts, client.WithBasicAuth(user, pass))
	}
	c := client.New(*url, opts...)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := c.Ready(hctx); err != nil {
		// Serve anyway: the daemon may come up later, and each tool call
		// says what went wrong.
		log.Warn("sandboxd is not ready: tool calls fail until it is", "url", *url, "error", err)
	}
	cancel()

	t := &sdk.IOTransport{Reader: io.NopCloser(stdin), Writer: nopWriteCloser{stdout}}
	err := mcp.NewServer(c, version()).Run(ctx, t)
	if ctx.Err() != nil || errors.Is(err, io.EOF) {
		return nil // told to stop, or the client closed stdin: both are the end
	}
	return err
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// newMCPHandler returns the daemon's /mcp handler, and the auth the API is
// to require: auth, plus a key of the handler's own when auth is on.
//
// The handler's tools call the daemon's own HTTP API (see package mcp for
// why). Each MCP request passed the guard already; the calls it makes in
// turn are authorized by that key, made at startup and never shown, since
// the caller's credentials may be Basic ones, which the client does not
// forward.
func newMCPHandler(log *slog.Logger, addr net.Addr, auth httpapi.Auth, maxBody int64, limits mcp.SessionLimits) (*mcp.HTTPHandler, httpapi.Auth) {
	var key string
	if auth.Enabled() {
		key = rand.Text()
		auth.APIKeys = append(slices.Clone(auth.APIKeys), key)
	}
	api := selfClient(addr, key)
	return mcp.NewHTTPHandler(mcp.NewServer(api, version()), log.With("component", "mcp"), maxBody, limits), auth
}

// selfClient returns a client of the daemon's own API, listening on addr.
// It dials addr (loopback when addr is a wildcard such as 0.0.0.0) but
// names the host localhost, which the guard's Host check accepts whatever
// --allowed-hosts says.
func selfClient(addr net.Addr, key string) *client.Client {
	dial := addr.String()
	if ta, ok := addr.(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		dial = net.JoinHostPort("127.0.0.1", strconv.Itoa(ta.Port))
	}
	_, port, _ := net.SplitHostPort(dial)
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.MaxIdleConnsPerHost = 64
	var d net.Dialer
	t.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, dial)
	}
	opts := []client.Option{client.WithHTTPClient(&http.Client{Transport: t})}
	if key != "" {
		opts = append(opts, client.WithAPIKey(key))
	}
	return client.New("http://localhost:"+port, opts...)
}

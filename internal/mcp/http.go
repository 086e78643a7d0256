package mcp

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// sessionTimeout closes MCP sessions idle this long. Clients that hold one
// open for days would otherwise keep its state forever; one that comes back
// later gets 404 and, as the MCP spec has it, starts a new session.
const sessionTimeout = 24 * time.Hour

// HTTPHandler serves an MCP server over the streamable HTTP transport:
// POST carries the client's messages, GET opens the stream of the server's
// own, DELETE ends a session.
type HTTPHandler struct {
	h       *sdk.StreamableHTTPHandler
	closing context.Context
	close   context.CancelFunc
}

// NewHTTPHandler returns a handler of s. maxBody caps request bodies (0 is
// the SDK's default of 4 MiB).
//
// It leaves the SDK's DNS rebinding check off: it stands behind the same
// guard as the rest of the API, which does that check unless auth is on,
// honours --allowed-hosts, and answers the API's error body.
func NewHTTPHandler(s *sdk.Server, log *slog.Logger, maxBody int64) *HTTPHandler {
	closing, close := context.WithCancel(context.Background())
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, &sdk.StreamableHTTPOptions{
		Logger:                     log,
		SessionTimeout:             sessionTimeout,
		DisableLocalhostProtection: true,
		MaxRequestBodyBytes:        maxBody,
	})
	return &HTTPHandler{h: h, closing: closing, close: close}
}

// ServeHTTP serves one request of the transport.
func (h *HTTPHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		// A GET stream lasts as long as the client wants: end it on Close.
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		defer context.AfterFunc(h.closing, cancel)()
		r = r.WithContext(ctx)
	}
	h.h.ServeHTTP(w, r)
}

// Close ends the open GET streams, which carry no answers to requests, so
// that a graceful http.Server.Shutdown need not wait for them; register it
// with RegisterOnShutdown. Requests in flight finish as usual.
func (h *HTTPHandler) Close() { h.close() }

package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// SessionLimits bound the MCP sessions the daemon keeps, since each holds
// state until it ends: without them, a client that opens sessions in a loop
// and never ends them would fill the daemon's memory.
type SessionLimits struct {
	// Max is the most sessions at once; an initialize past it is refused
	// with 429, and the client may try again once others end.
	Max int
	// Idle ends a session after this long without a request; a client that
	// comes back later gets 404 and, as the MCP spec has it, starts anew.
	Idle time.Duration
}

// HTTPHandler serves an MCP server over the streamable HTTP transport:
// POST carries the client's messages, GET opens the stream of the server's
// own, DELETE ends a session.
type HTTPHandler struct {
	h      *sdk.StreamableHTTPHandler
	server *sdk.Server
	max    int
	// starting counts the requests that may start a session now: with the
	// sessions that exist, they are what Max bounds.
	starting atomic.Int64
	closing  context.Context
	close    context.CancelFunc
}

// NewHTTPHandler returns a handler of s. maxBody caps request bodies (0 is
// the SDK's default of 4 MiB).
//
// It leaves the SDK's DNS rebinding check off: it stands behind the same
// guard as the rest of the API, which does that check unless auth is on,
// honours --allowed-hosts, and answers the API's error body.
func NewHTTPHandler(s *sdk.Server, log *slog.Logger, maxBody int64, limits SessionLimits) *HTTPHandler {
	closing, close := context.WithCancel(context.Background())
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, &sdk.StreamableHTTPOptions{
		Logger:                     log,
		SessionTimeout:             limits.Idle,
		DisableLocalhostProtection: true,
		MaxRequestBodyBytes:        maxBody,
	})
	return &HTTPHandler{h: h, server: s, max: limits.Max, closing: closing, close: close}
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
	if h.max > 0 && r.Method == http.MethodPost && r.Header.Get("Mcp-Session-Id") == "" {
		// Only an initialize without a session id starts a session. Once
		// it answers, its session is among the server's, so it no longer
		// counts as starting.
		var once sync.Once
		started := func() { once.Do(func() { h.starting.Add(-1) }) }
		defer started()
		if n := int(h.starting.Add(1)) - 1 + h.sessions(); n >= h.max {
			writeError(w, http.StatusTooManyRequests, "TOO_MANY_SESSIONS",
				fmt.Sprintf("there are %d MCP sessions, the most this daemon keeps; end one (DELETE /mcp) or try again later", h.max))
			return
		}
		w = &answerWriter{ResponseWriter: w, answered: started}
	}
	h.h.ServeHTTP(w, r)
}

// answerWriter calls answered when the response starts.
type answerWriter struct {
	http.ResponseWriter
	answered func()
}

func (w *answerWriter) WriteHeader(status int) {
	w.answered()
	w.ResponseWriter.WriteHeader(status)
}

func (w *answerWriter) Write(b []byte) (int, error) {
	w.answered()
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *answerWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (h *HTTPHandler) sessions() int {
	n := 0
	for range h.server.Sessions() {
		n++
	}
	return n
}

// writeError answers with the API's error body.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg, "code": code})
}

// Close ends the open GET streams, which carry no answers to requests, so
// that a graceful http.Server.Shutdown need not wait for them; register it
// with RegisterOnShutdown. Requests in flight finish as usual.
func (h *HTTPHandler) Close() { h.close() }

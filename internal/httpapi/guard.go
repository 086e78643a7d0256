package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/gorilla/websocket"

	"github.com/sandboxd/sandboxd/internal/console"
	"github.com/sandboxd/sandboxd/internal/contexts"
)

// Codes of the guard's refusals.
const (
	codeUnauthorized    = "UNAUTHORIZED"
	codeForbidden       = "FORBIDDEN_HOST"
	codeForbiddenOrigin = "FORBIDDEN_ORIGIN"
)

// Auth is who may call the API. With neither field set, anyone who can
// reach the port may.
type Auth struct {
	APIKeys []string // accepted as Authorization: Bearer <key>
	Basic   []string // accepted as HTTP Basic credentials, each "user:password"
}

// Enabled reports whether credentials are required.
func (a Auth) Enabled() bool { return len(a.APIKeys)+len(a.Basic) > 0 }

// allows reports whether r carries credentials a accepts. Every secret is
// compared in constant time, through a hash so that lengths leak nothing.
func (a Auth) allows(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	var given string
	var accepted []string
	if key := r.Header.Get("X-Api-Key"); key != "" && difyRoute(r) {
		// Dify sends its CODE_EXECUTION_API_KEY so.
		given, accepted = key, a.APIKeys
	} else if key, ok := strings.CutPrefix(h, "Bearer "); ok {
		given, accepted = key, a.APIKeys
	} else if user, pass, ok := r.BasicAuth(); ok {
		given, accepted = user+":"+pass, a.Basic
	}
	if given == "" {
		return false
	}
	g := sha256.Sum256([]byte(given))
	ok := 0
	for _, s := range accepted {
		want := sha256.Sum256([]byte(s))
		ok |= subtle.ConstantTimeCompare(g[:], want[:])
	}
	return ok == 1
}

// guard refuses requests without valid credentials (when auth is on) with
// 401, and, when auth is off, requests whose Host is not this machine's
// nor listed in allowedHosts with 403: a page on any web site can make the
// browser send requests to localhost through a name it controls (DNS
// rebinding), and only the Host header tells. /health stays open to all,
// and the console's static files need no credentials: they hold no data,
// and the page they make asks for the key itself.
func guard(log *slog.Logger, auth Auth, allowedHosts []string) func(http.Handler) http.Handler {
	anyHost := false
	allowed := map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true}
	for _, h := range allowedHosts {
		if h = strings.TrimSpace(h); h == "" {
			continue
		}
		if h == "*" {
			anyHost = true
		}
		allowed[strings.ToLower(h)] = true
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/health" {
				next.ServeHTTP(w, r)
				return
			}
			if auth.Enabled() {
				if !auth.allows(r) && !consoleFile(r) {
					if difyRoute(r) {
						// As dify-sandbox answers a wrong key: 401, no body.
						w.WriteHeader(http.StatusUnauthorized)
						return
					}
					w.Header().Set("WWW-Authenticate", `Bearer realm="sandboxd"`)
					if len(auth.Basic) > 0 {
						w.Header().Add("WWW-Authenticate", `Basic realm="sandboxd"`)
					}
					writeError(w, r, log, contexts.Errorf(codeUnauthorized, "valid credentials are required"))
					return
				}
			} else if !anyHost && !allowed[hostOnly(r.Host)] {
				writeError(w, r, log, contexts.Errorf(codeForbidden, "host %q is not allowed; use localhost, or add it with --allowed-hosts", r.Host))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// difyRoute reports whether r is for one of dify-sandbox's routes.
func difyRoute(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, difyPrefix+"/")
}

// consoleFile reports whether r reads one of the console's static files.
func consoleFile(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && console.Public(r.URL.Path)
}

// hostOnly returns the host of a Host header, without port or brackets.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return strings.ToLower(h)
	}
	return strings.ToLower(strings.Trim(hostport, "[]"))
}

// crossOrigin refuses what a browser sends on behalf of a page of another
// origin: without it, any web site the user visits could create contexts
// and run code through the user's browser, since a POST with a text/plain
// body, or a form's, needs no CORS preflight, and the Host is localhost.
// Browsers mark such requests (Sec-Fetch-Site, or an Origin that is not
// the Host); curl, SDKs and other programs send neither and pass, as do
// pages of sandboxd's own origin. Safe methods pass: they change nothing,
// and without CORS headers a page cannot read what they answer. A
// websocket handshake is a GET, yet opens a channel that runs code, so it
// is judged as a POST.
func crossOrigin(log *slog.Logger) func(http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	deny := func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, log, contexts.Errorf(codeForbiddenOrigin, "cross-origin requests from a browser are refused: a web page of another origin may not drive sandboxd"))
	}
	cop.SetDenyHandler(http.HandlerFunc(deny))
	return func(next http.Handler) http.Handler {
		protected := cop.Handler(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if websocket.IsWebSocketUpgrade(r) {
				asPost := r.WithContext(r.Context())
				asPost.Method = http.MethodPost
				if cop.Check(asPost) != nil {
					deny(w, r)
					return
				}
			}
			protected.ServeHTTP(w, r)
		})
	}
}

// secureHeaders marks every response so that browsers never guess a type
// other than the one given: a file written by code must not become a page.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

package httpapi

import (
	"context"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

func TestGuard(t *testing.T) {
	fake := &fakeService{ping: func(ctx context.Context) error { return nil }}
	tests := []struct {
		name    string
		cfg     Config
		path    string
		host    string
		header  http.Header
		status  int
		wwwAuth bool
	}{
		{name: "localhost", path: "/readyz", host: "localhost:8080", status: 200},
		{name: "loopback ip", path: "/readyz", host: "127.0.0.1:8080", status: 200},
		{name: "loopback v6", path: "/readyz", host: "[::1]:8080", status: 200},
		{name: "rebound name", path: "/readyz", host: "evil.example:8080", status: 403},
		{name: "rebound name, health", path: "/health", host: "evil.example", status: 200},
		{name: "allowed host", cfg: Config{AllowedHosts: []string{"sandboxd"}}, path: "/readyz", host: "sandboxd:8080", status: 200},
		{name: "any host", cfg: Config{AllowedHosts: []string{"*"}}, path: "/readyz", host: "evil.example", status: 200},

		{name: "key missing", cfg: Config{Auth: Auth{APIKeys: []string{"k1"}}}, path: "/readyz", host: "localhost", status: 401, wwwAuth: true},
		{name: "key wrong", cfg: Config{Auth: Auth{APIKeys: []string{"k1"}}}, path: "/readyz", host: "localhost", header: http.Header{"Authorization": {"Bearer k2"}}, status: 401, wwwAuth: true},
		{name: "key prefix", cfg: Config{Auth: Auth{APIKeys: []string{"k1"}}}, path: "/readyz", host: "localhost", header: http.Header{"Authorization": {"Bearer k"}}, status: 401, wwwAuth: true},
		{name: "key right", cfg: Config{Auth: Auth{APIKeys: []string{"k0", "k1"}}}, path: "/readyz", host: "localhost", header: http.Header{"Authorization": {"Bearer k1"}}, status: 200},
		{name: "key right, any host", cfg: Config{Auth: Auth{APIKeys: []string{"k1"}}}, path: "/readyz", host: "sandboxd.internal", header: http.Header{"Authorization": {"Bearer k1"}}, status: 200},
		{name: "key as basic", cfg: Config{Auth: Auth{APIKeys: []string{"u:p"}}}, path: "/readyz", host: "localhost", header: http.Header{"Authorization": {"Basic dTpw"}}, status: 401, wwwAuth: true},
		{name: "basic right", cfg: Config{Auth: Auth{Basic: []string{"u:p"}}}, path: "/readyz", host: "localhost", header: http.Header{"Authorization": {"Basic dTpw"}}, status: 200},
		{name: "basic wrong", cfg: Config{Auth: Auth{Basic: []string{"u:q"}}}, path: "/readyz", host: "localhost", header: http.Header{"Authorization": {"Basic dTpw"}}, status: 401, wwwAuth: true},
		{name: "auth, health open", cfg: Config{Auth: Auth{APIKeys: []string{"k1"}}}, path: "/health", host: "localhost", status: 200},
		{name: "auth, metrics closed", cfg: Config{Auth: Auth{APIKeys: []string{"k1"}}}, path: "/metrics", host: "localhost", status: 401, wwwAuth: true},
		{name: "auth, console page open", cfg: Config{Auth: Auth{APIKeys: []string{"k1"}}}, path: "/ui/", host: "localhost", status: 200},
		{name: "auth, console script open", cfg: Config{Auth: Auth{APIKeys: []string{"k1"}}}, path: "/ui/app.js", host: "localhost", status: 200},
		{name: "auth, root redirects to console", cfg: Config{Auth: Auth{APIKeys: []string{"k1"}}}, path: "/", host: "localhost", status: 302},
		{name: "auth, no api through console path", cfg: Config{Auth: Auth{APIKeys: []string{"k1"}}}, path: "/ui/../api/v1/contexts", host: "localhost", status: 404},
		{name: "auth, no api through escaped console path", cfg: Config{Auth: Auth{APIKeys: []string{"k1"}}}, path: "/ui/%2e%2e/api/v1/contexts", host: "localhost", status: 404},
		{name: "rebound name, console", path: "/ui/", host: "evil.example", status: 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Registry = prometheus.NewRegistry()
			h := NewHandler(slog.New(slog.DiscardHandler), fake, cfg)
			req := httptest.NewRequest("GET", tt.path, nil)
			req.Host = tt.host
			for k, v := range tt.header {
				req.Header[k] = v
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Errorf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if got := rec.Header().Get("WWW-Authenticate") != ""; got != tt.wwwAuth {
				t.Errorf("WWW-Authenticate %q", rec.Header().Values("WWW-Authenticate"))
			}
		})
	}
}

func TestCrossOrigin(t *testing.T) {
	fake := &fakeService{
		create: func(context.Context, contexts.CreateRequest) (contexts.Info, error) {
			return contexts.Info{ID: ctxID, Language: "python", Status: contexts.StatusActive}, nil
		},
		get: func(string) (contexts.Info, error) { return contexts.Info{ID: ctxID}, nil },
	}
	h := NewHandler(slog.New(slog.DiscardHandler), fake, Config{Registry: prometheus.NewRegistry()})
	create, ws := "/api/v1/contexts", "/api/v1/contexts/"+ctxID+"/ws"
	wsHeader := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
	tests := []struct {
		name   string
		method string
		path   string
		header http.Header
		status int
	}{
		{name: "curl", method: "POST", path: create, status: 201},
		{name: "cross-site fetch", method: "POST", path: create, header: http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"http://evil.example"}}, status: 403},
		{name: "same-site other port", method: "POST", path: create, header: http.Header{"Sec-Fetch-Site": {"same-site"}, "Origin": {"http://localhost:3000"}}, status: 403},
		{name: "origin only, other", method: "POST", path: create, header: http.Header{"Origin": {"http://localhost:3000"}}, status: 403},
		{name: "origin only, same", method: "POST", path: create, header: http.Header{"Origin": {"http://localhost:8080"}}, status: 201},
		{name: "same-origin page", method: "POST", path: create, header: http.Header{"Sec-Fetch-Site": {"same-origin"}, "Origin": {"http://localhost:8080"}}, status: 201},
		{name: "typed url", method: "POST", path: create, header: http.Header{"Sec-Fetch-Site": {"none"}}, status: 201},
		{name: "cross-site delete", method: "DELETE", path: create + "/" + ctxID, header: http.Header{"Sec-Fetch-Site": {"cross-site"}}, status: 403},
		{name: "cross-site read", method: "GET", path: create + "/" + ctxID, header: http.Header{"Sec-Fetch-Site": {"cross-site"}}, status: 200},
		{name: "cross-site websocket", method: "GET", path: ws, header: withHeader(wsHeader, "Origin", "http://evil.example"), status: 403},
		{name: "cross-site websocket, fetch metadata", method: "GET", path: ws, header: withHeader(wsHeader, "Sec-Fetch-Site", "cross-site"), status: 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(`{}`))
			req.Host = "localhost:8080"
			maps.Copy(req.Header, tt.header)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if tt.status == 403 && !strings.Contains(rec.Body.String(), `"code":"FORBIDDEN_ORIGIN"`) {
				t.Errorf("body %s, want code FORBIDDEN_ORIGIN", rec.Body)
			}
			if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q", got)
			}
		})
	}
}

func withHeader(h http.Header, key, value string) http.Header {
	h = h.Clone()
	h.Set(key, value)
	return h
}

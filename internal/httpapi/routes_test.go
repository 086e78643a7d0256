package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandboxd/sandboxd/api"
	"github.com/sandboxd/sandboxd/internal/contexts"
)

func TestUnroutedRequests(t *testing.T) {
	tests := []struct {
		name   string
		method string
		path   string
		want   want
	}{
		{
			name: "unknown path", method: http.MethodGet, path: "/nope",
			want: want{status: http.StatusNotFound, contentType: ctJSON, errObj: errBody("no such endpoint: GET /nope", codeNotFound)},
		},
		{
			name: "api prefix only", method: http.MethodGet, path: "/api/v1",
			want: want{status: http.StatusNotFound, contentType: ctJSON, errObj: errBody("no such endpoint: GET /api/v1", codeNotFound)},
		},
		{
			name: "unknown path below a context", method: http.MethodPost, path: "/api/v1/contexts/" + ctxID + "/bogus",
			want: want{status: http.StatusNotFound, contentType: ctJSON, errCode: codeNotFound, errMsg: "/bogus"},
		},
		{
			name: "put on the context collection", method: http.MethodPut, path: "/api/v1/contexts",
			want: want{status: http.StatusMethodNotAllowed, contentType: ctJSON, errObj: errBody("method PUT is not allowed on /api/v1/contexts", codeMethodNotAllowed)},
		},
		{
			name: "delete on the context collection", method: http.MethodDelete, path: "/api/v1/contexts",
			want: want{status: http.StatusMethodNotAllowed, contentType: ctJSON, errCode: codeMethodNotAllowed, errMsg: "DELETE"},
		},
		{
			name: "patch on a context", method: http.MethodPatch, path: "/api/v1/contexts/" + ctxID,
			want: want{status: http.StatusMethodNotAllowed, contentType: ctJSON, errCode: codeMethodNotAllowed, errMsg: "PATCH"},
		},
		{
			name: "get on execute", method: http.MethodGet, path: "/api/v1/contexts/" + ctxID + "/execute",
			want: want{status: http.StatusMethodNotAllowed, contentType: ctJSON, errCode: codeMethodNotAllowed, errMsg: "GET"},
		},
		{
			name: "post on health", method: http.MethodPost, path: "/health",
			want: want{status: http.StatusMethodNotAllowed, contentType: ctJSON, errObj: errBody("method POST is not allowed on /health", codeMethodNotAllowed)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, nil)
			got := s.do(t, request{method: tt.method, path: tt.path})
			checkResponse(t, got, tt.want)
			if n := s.fake.calls(); n != 0 {
				t.Errorf("the service got %d calls, want none", n)
			}
		})
	}
}

func TestPanicIsInternalError(t *testing.T) {
	tests := []struct {
		name string
		fake *fakeService
		req  request
	}{
		{
			name: "create panics",
			fake: &fakeService{create: func(context.Context, contexts.CreateRequest) (contexts.Info, error) {
				panic("create exploded with secret detail")
			}},
			req: request{method: http.MethodPost, path: "/api/v1/contexts", body: `{}`},
		},
		{
			name: "execute panics",
			fake: &fakeService{execute: func(context.Context, string, contexts.ExecuteRequest) (contexts.Execution, error) {
				var m map[string]int
				m["secret detail"]++ // assignment to entry in nil map
				return contexts.Execution{}, nil
			}},
			req: request{method: http.MethodPost, path: "/api/v1/contexts/" + ctxID + "/execute", body: `{"code":"1"}`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, tt.fake)
			got := s.do(t, tt.req)
			checkResponse(t, got, want{
				status: http.StatusInternalServerError, contentType: ctJSON,
				errObj: errBody("internal error", contexts.CodeInternal), notContains: []string{"secret detail", "panic"},
			})
		})
	}
}

func TestMetrics(t *testing.T) {
	const otherID = "ctx-00000000-0000-4000-8000-00000000beef"
	s := newTestServer(t, &fakeService{
		get: func(id string) (contexts.Info, error) {
			if id == ctxID {
				return sampleInfo(), nil
			}
			return notFound(id)
		},
		del: func(context.Context, string) error { return nil },
	})
	for _, r := range []request{
		{method: http.MethodGet, path: "/api/v1/contexts/" + ctxID},
		{method: http.MethodGet, path: "/api/v1/contexts/" + otherID},
		{method: http.MethodDelete, path: "/api/v1/contexts/" + otherID},
		{method: http.MethodGet, path: "/no/such/" + otherID},
	} {
		s.do(t, r)
	}
	got := s.do(t, request{method: http.MethodGet, path: "/metrics"})
	if got.status != http.StatusOK {
		t.Fatalf("GET /metrics: status %d, body %s", got.status, got.body)
	}
	if ct := got.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("GET /metrics: Content-Type %q, want text/plain", ct)
	}
	body := string(got.body)
	for _, line := range []string{
		// chi reports the pattern of a route inside r.Route without the "/"
		// its subrouter registers it under.
		`sandboxd_http_requests_total{code="200",method="GET",route="/api/v1/contexts/{id}"} 1`,
		`sandboxd_http_requests_total{code="404",method="GET",route="/api/v1/contexts/{id}"} 1`,
		`sandboxd_http_requests_total{code="204",method="DELETE",route="/api/v1/contexts/{id}"} 1`,
		`sandboxd_http_request_duration_seconds_count{method="GET",route="/api/v1/contexts/{id}"} 2`,
		`sandboxd_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
	} {
		if !strings.Contains(body, "\n"+line+"\n") {
			t.Errorf("GET /metrics: exposition lacks the line\n%s", line)
		}
	}
	for _, id := range []string{ctxID, otherID} {
		if strings.Contains(body, id) {
			t.Errorf("GET /metrics: exposition contains the context id %s", id)
		}
	}
	if t.Failed() {
		t.Logf("exposition:\n%s", body)
	}
}

// TestRouteTableMatchesSpec checks that every route under /health, /readyz
// and /api/ is an operation of api/openapi.yaml and the other way round.
// /metrics is left out on both sides: it is served by promhttp for any
// method.
func TestRouteTableMatchesSpec(t *testing.T) {
	h := NewHandler(slog.New(slog.DiscardHandler), &fakeService{}, Config{MaxBodyBytes: maxBody, Registry: prometheus.NewRegistry(), MCP: http.NotFoundHandler()})
	routes, ok := h.(chi.Routes)
	if !ok {
		t.Fatalf("NewHandler returned %T, not a chi.Routes", h)
	}
	inScope := func(path string) bool {
		return path == "/health" || path == "/readyz" || path == "/mcp" || strings.HasPrefix(path, "/api/") || strings.HasPrefix(path, "/sandboxes") || strings.HasPrefix(path, "/templates")
	}

	var routed []string
	err := chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if p := normaliseRoute(route); inScope(p) {
			routed = append(routed, method+" "+p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("chi.Walk: %v", err)
	}

	doc, err := openapi3.NewLoader().LoadFromData(api.Spec)
	if err != nil {
		t.Fatalf("loading api/openapi.yaml: %v", err)
	}
	var documented []string
	for path, item := range doc.Paths.Map() {
		p := normaliseRoute(path)
		if !inScope(p) {
			continue
		}
		for method := range item.Operations() {
			documented = append(documented, strings.ToUpper(method)+" "+p)
		}
	}

	slices.Sort(routed)
	slices.Sort(documented)
	if len(documented) < 7 {
		t.Errorf("api/openapi.yaml has only %d operations in scope: %q", len(documented), documented)
	}
	if dup := slices.Compact(slices.Clone(routed)); len(dup) != len(routed) {
		t.Errorf("a route is registered twice: %q", routed)
	}
	for _, r := range routed {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not documented in api/openapi.yaml", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routed, d) {
			t.Errorf("operation %s of api/openapi.yaml has no route", d)
		}
	}
	if t.Failed() {
		t.Logf("routed:     %q", routed)
		t.Logf("documented: %q", documented)
	}
}

var pathParam = regexp.MustCompile(`\{[^}/]*\}`)

// normaliseRoute makes chi route patterns and OpenAPI paths comparable: no
// trailing slash, every path parameter written {}.
func normaliseRoute(p string) string {
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	// chi's catch-all is the document's {path:.+}, gorilla/mux's form.
	if strings.HasSuffix(p, "/*") {
		p = strings.TrimSuffix(p, "*") + "{}"
	}
	return pathParam.ReplaceAllString(p, "{}")
}

func TestNormaliseRoute(t *testing.T) {
	for in, want := range map[string]string{
		"/":                                 "/",
		"/health":                           "/health",
		"/api/v1/contexts/":                 "/api/v1/contexts",
		"/api/v1/contexts/{id}/":            "/api/v1/contexts/{}",
		"/api/v1/contexts/{id}/execute":     "/api/v1/contexts/{}/execute",
		"/api/v1/contexts/{contextId}/exec": "/api/v1/contexts/{}/exec",
	} {
		if got := normaliseRoute(in); got != want {
			t.Errorf("normaliseRoute(%q) = %q, want %q", in, got, want)
		}
	}
}

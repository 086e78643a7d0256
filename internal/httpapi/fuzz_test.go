package httpapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// Whatever a client sends as a body, the daemon answers with a status it
// documents and a JSON body: never a panic, never a bare Go error.
func FuzzRequestBodies(f *testing.F) {
	for _, s := range []string{
		`{"code":"print(1)","timeout":30}`, `{"code":5}`, `{"code":"x","timeout":-1}`, `{"code":"x","env":{"A":"1"}}`,
		`{"language":"python","working_dir":"/workspace","env":{"K":"v"}}`, `{`, `[]`, `null`, `{"timeout":1e400}`,
	} {
		f.Add(s)
	}
	fake := &fakeService{
		get:    func(string) (contexts.Info, error) { return sampleInfo(), nil },
		create: func(context.Context, contexts.CreateRequest) (contexts.Info, error) { return sampleInfo(), nil },
		execute: func(context.Context, string, contexts.ExecuteRequest) (contexts.Execution, error) {
			return contexts.Execution{}, nil
		},
	}
	h := NewHandler(slog.New(slog.DiscardHandler), fake, Config{MaxBodyBytes: 1 << 16, Registry: prometheus.NewRegistry(), AllowedHosts: []string{"*"}})
	f.Fuzz(func(t *testing.T, body string) {
		for _, path := range []string{"/api/v1/contexts", "/api/v1/contexts/ctx-1/execute"} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
			switch rec.Code {
			case http.StatusOK, http.StatusCreated:
			case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
				var e errorResponse
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code == "" || e.Error == "" {
					t.Errorf("POST %s %q: error body %q", path, body, rec.Body)
				}
			default:
				t.Errorf("POST %s %q: status %d: %s", path, body, rec.Code, rec.Body)
			}
		}
	})
}

package apitest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// recorder is a testing.TB that records Errorf calls instead of failing the
// real test, so the tests can observe that Check fails.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

const ctxPath = "/api/v1/contexts/ctx-3f2b8c1e-9a4d-4e7b-8c21-5d6f7a8b9c0d"

const validExecute = `{
  "output": {"stdout": "Hello from Local Sandbox\n", "stderr": ""},
  "success": true,
  "execution_time": 0.012,
  "execution_count": 1,
  "results": [{"type": "execute_result", "data": {"text/plain": "2", "application/json": {"a": [1, 2]}}, "metadata": {}}]
}`

const validContext = `{
  "context_id": "ctx-3f2b8c1e-9a4d-4e7b-8c21-5d6f7a8b9c0d",
  "type": "jupyter",
  "language": "python",
  "session_name": "test-session",
  "working_dir": "/workspace",
  "status": "active",
  "created_at": "2025-01-15T10:30:00.123456Z",
  "last_activity": "2025-01-15T10:30:00Z",
  "execution_count": 0,
			"restarts": 0,
			"network": false
}`

type exchange struct {
	name        string
	method      string
	url         string
	reqBody     string
	status      int
	contentType string
	respBody    string
	wantFail    bool
	wantInError string // a substring every failure message must contain
}

// fake records a response with httptest and returns it with its body read.
func fake(x exchange) (*http.Request, []byte, *http.Response, []byte) {
	var body io.Reader
	if x.reqBody != "" {
		body = strings.NewReader(x.reqBody)
	}
	req := httptest.NewRequest(x.method, x.url, body)
	if x.reqBody != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	if x.contentType != "" {
		rec.Header().Set("Content-Type", x.contentType)
	}
	rec.WriteHeader(x.status)
	io.WriteString(rec, x.respBody)
	resp := rec.Result()
	respBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return req, []byte(x.reqBody), resp, respBody
}

func TestCheck(t *testing.T) {
	v := New(t)
	execURL := "http://127.0.0.1:41234" + ctxPath + "/execute"
	tests := []exchange{
		{
			name: "execute ok", method: "POST", url: execURL,
			reqBody: `{"code":"print(1)","timeout":30}`,
			status:  200, contentType: "application/json", respBody: validExecute,
		},
		{
			name: "execute timed out, null count, truncated", method: "POST", url: execURL,
			reqBody: `{"code":"import time; time.sleep(5)","timeout":0.5}`,
			status:  200, contentType: "application/json; charset=utf-8",
			respBody: `{"output":{"stdout":"","stderr":"TimeoutError: execution exceeded the timeout of 500ms\n"},
				"success":false,"execution_time":0.503,"execution_count":null,"results":[],"truncated":true,
				"error":{"name":"TimeoutError","value":"execution exceeded the timeout of 500ms","traceback":""}}`,
		},
		{
			name: "execute success as string", method: "POST", url: execURL,
			reqBody: `{"code":"print(1)"}`,
			status:  200, contentType: "application/json",
			respBody: strings.Replace(validExecute, `"success": true`, `"success": "true"`, 1),
			wantFail: true, wantInError: "POST " + ctxPath + "/execute",
		},
		{
			name: "execute missing output", method: "POST", url: execURL,
			reqBody: `{"code":"print(1)"}`,
			status:  200, contentType: "application/json",
			respBody: `{"success":true,"execution_time":0.012,"execution_count":1,"results":[]}`,
			wantFail: true, wantInError: "output",
		},
		{
			name: "execute unknown field", method: "POST", url: execURL,
			reqBody: `{"code":"print(1)"}`,
			status:  200, contentType: "application/json",
			respBody: strings.Replace(validExecute, `"success": true`, `"success": true, "sucess": true`, 1),
			wantFail: true,
		},
		{
			name: "execute wrong content type", method: "POST", url: execURL,
			reqBody: `{"code":"print(1)"}`,
			status:  200, contentType: "text/plain", respBody: validExecute,
			wantFail: true,
		},
		{
			name: "execute request without code accepted", method: "POST", url: execURL,
			reqBody: `{"timeout":30}`,
			status:  200, contentType: "application/json", respBody: validExecute,
			wantFail: true, wantInError: "does not match",
		},
		{
			name: "execute request without code rejected", method: "POST", url: execURL,
			reqBody: `{"timeout":30}`,
			status:  400, contentType: "application/json",
			respBody: `{"error":"field \"code\" is required","code":"INVALID_REQUEST"}`,
		},
		{
			name: "execute request with zero timeout accepted", method: "POST", url: execURL,
			reqBody: `{"code":"print(1)","timeout":0}`,
			status:  200, contentType: "application/json", respBody: validExecute,
			wantFail: true, wantInError: "timeout",
		},
		{
			name: "create context outside allowed dirs accepted", method: "POST", url: "/api/v1/contexts",
			reqBody: `{"working_dir":"/etc"}`,
			status:  201, contentType: "application/json", respBody: validContext,
			wantFail: true, wantInError: "working_dir",
		},
		{
			name: "execute 404 with known code", method: "POST", url: execURL,
			reqBody: `{"code":"print(1)"}`,
			status:  404, contentType: "application/json",
			respBody: `{"error":"context not found","code":"CONTEXT_NOT_FOUND"}`,
		},
		{
			name: "execute 404 with unknown code", method: "POST", url: execURL,
			reqBody: `{"code":"print(1)"}`,
			status:  404, contentType: "application/json",
			respBody: `{"error":"context not found","code":"NO_SUCH_CONTEXT"}`,
			wantFail: true, wantInError: "code",
		},
		{
			name: "execute undocumented status", method: "POST", url: execURL,
			reqBody: `{"code":"print(1)"}`,
			status:  409, contentType: "application/json",
			respBody: `{"error":"busy","code":"CONTEXT_BUSY"}`,
			wantFail: true,
		},
		{
			name: "create context", method: "POST", url: "/api/v1/contexts",
			reqBody: `{"type":"jupyter","language":"python","session_name":"test-session","working_dir":"/workspace","extra":1}`,
			status:  201, contentType: "application/json", respBody: validContext,
		},
		{
			name: "create context with empty body", method: "POST", url: "/api/v1/contexts",
			status: 201, contentType: "application/json", respBody: validContext,
		},
		{
			name: "create context with bad id", method: "POST", url: "/api/v1/contexts",
			status: 201, contentType: "application/json",
			respBody: strings.Replace(validContext, "ctx-3f2b8c1e", "context-3f2b8c1e", 1),
			wantFail: true,
		},
		{
			name: "create context with bad timestamp", method: "POST", url: "/api/v1/contexts",
			status: 201, contentType: "application/json",
			respBody: strings.Replace(validContext, `"2025-01-15T10:30:00Z"`, `"2025-01-15 10:30:00"`, 1),
			wantFail: true,
		},
		{
			name: "list contexts", method: "GET", url: "/api/v1/contexts",
			status: 200, contentType: "application/json", respBody: `{"contexts":[` + validContext + `]}`,
		},
		{
			name: "list contexts as bare array", method: "GET", url: "/api/v1/contexts",
			status: 200, contentType: "application/json", respBody: `[` + validContext + `]`,
			wantFail: true,
		},
		{
			name: "delete", method: "DELETE", url: ctxPath,
			status: 204,
		},
		{
			name: "delete with a body", method: "DELETE", url: ctxPath,
			status: 204, contentType: "application/json", respBody: `{}`,
			wantFail: true,
		},
		{
			name: "health", method: "GET", url: "/health",
			status: 200, contentType: "text/plain; charset=utf-8", respBody: "OK",
		},
		{
			name: "readyz unavailable", method: "GET", url: "/readyz",
			status: 503, contentType: "application/json",
			respBody: `{"error":"docker engine unavailable","code":"DOCKER_UNAVAILABLE"}`,
		},
		{
			name: "metrics", method: "GET", url: "/metrics",
			status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8; escaping=underscores",
			respBody: "# TYPE go_goroutines gauge\ngo_goroutines 12\n",
		},
		{
			name: "unknown path", method: "GET", url: "/nope",
			status: 404, contentType: "application/json",
			respBody: `{"error":"not found","code":"NOT_FOUND"}`,
		},
		{
			name: "unknown path with plain text 404", method: "GET", url: "/nope",
			status: 404, contentType: "text/plain; charset=utf-8", respBody: "404 page not found\n",
			wantFail: true,
		},
		{
			name: "method not allowed", method: "PUT", url: "/api/v1/contexts",
			status: 405, contentType: "application/json",
			respBody: `{"error":"method not allowed","code":"METHOD_NOT_ALLOWED"}`,
		},
		{
			name: "method not allowed answered 404", method: "PUT", url: "/api/v1/contexts",
			status: 404, contentType: "application/json",
			respBody: `{"error":"not found","code":"NOT_FOUND"}`,
			wantFail: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, reqBody, resp, respBody := fake(tc)
			rec := &recorder{TB: t}
			v.Check(rec, req, reqBody, resp, respBody)
			switch {
			case tc.wantFail && len(rec.errs) == 0:
				t.Fatalf("Check passed, want a failure")
			case !tc.wantFail && len(rec.errs) > 0:
				t.Fatalf("Check failed, want a pass:\n%s", strings.Join(rec.errs, "\n"))
			}
			for _, e := range rec.errs {
				if !strings.Contains(e, tc.method+" ") {
					t.Errorf("failure does not name the method and path: %s", e)
				}
				if tc.wantInError != "" && !strings.Contains(e, tc.wantInError) {
					t.Errorf("failure does not mention %q: %s", tc.wantInError, e)
				}
			}
			if len(rec.errs) > 0 {
				t.Logf("expected failure: %s", rec.errs[0])
			}
		})
	}
}

package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/kernel"
)

func TestProbes(t *testing.T) {
	tests := []struct {
		name      string
		path      string
		ping      func(context.Context) error
		want      want
		wantPings int
	}{
		{
			name: "health",
			path: "/health",
			want: want{status: http.StatusOK, contentType: ctText, text: "OK"},
		},
		{
			name:      "ready",
			path:      "/readyz",
			ping:      func(context.Context) error { return nil },
			want:      want{status: http.StatusOK, contentType: ctText, text: "OK"},
			wantPings: 1,
		},
		{
			name: "not ready, plain error",
			path: "/readyz",
			ping: func(context.Context) error {
				return errors.New("dial unix /var/run/docker.sock: connect: no such file")
			},
			want: want{
				status: http.StatusServiceUnavailable, contentType: ctJSON,
				errObj:      errBody("the Docker engine cannot be reached", contexts.CodeRuntimeUnavailable),
				notContains: []string{"docker.sock"},
			},
			wantPings: 1,
		},
		{
			name: "not ready, coded error",
			path: "/readyz",
			ping: func(context.Context) error {
				return contexts.Errorf(contexts.CodeRuntimeUnavailable, "docker engine unavailable")
			},
			want: want{
				status: http.StatusServiceUnavailable, contentType: ctJSON,
				errObj: errBody("docker engine unavailable", contexts.CodeRuntimeUnavailable),
			},
			wantPings: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, &fakeService{ping: tt.ping})
			got := s.do(t, request{method: http.MethodGet, path: tt.path})
			checkResponse(t, got, tt.want)
			if s.fake.pings != tt.wantPings {
				t.Errorf("Ping called %d times, want %d", s.fake.pings, tt.wantPings)
			}
		})
	}
}

func TestCreateContext(t *testing.T) {
	created := func(context.Context, contexts.CreateRequest) (contexts.Info, error) { return sampleInfo(), nil }
	failWith := func(err error) func(context.Context, contexts.CreateRequest) (contexts.Info, error) {
		return func(context.Context, contexts.CreateRequest) (contexts.Info, error) { return contexts.Info{}, err }
	}
	// A valid body of exactly maxBody bytes.
	exact := `{"session_name":"` + strings.Repeat("s", maxBody-len(`{"session_name":""}`)) + `"}`
	tooLarge := `{"session_name":"` + strings.Repeat("s", maxBody) + `"}`

	tests := []struct {
		name          string
		body          string
		unknownLength bool
		create        func(context.Context, contexts.CreateRequest) (contexts.Info, error)
		wantReq       *contexts.CreateRequest // nil: Create must not be called
		want          want
	}{
		{
			name:    "no body",
			create:  created,
			wantReq: &contexts.CreateRequest{},
			want:    want{status: http.StatusCreated, contentType: ctJSON, json: sampleInfoJSON},
		},
		{
			name:    "empty object",
			body:    `{}`,
			create:  created,
			wantReq: &contexts.CreateRequest{},
			want:    want{status: http.StatusCreated, contentType: ctJSON, json: sampleInfoJSON},
		},
		{
			name:    "all fields",
			body:    `{"type":"jupyter","language":"python","session_name":"my session","working_dir":"/tmp/work","network":true}`,
			create:  created,
			wantReq: &contexts.CreateRequest{Type: "jupyter", Language: "python", SessionName: "my session", WorkingDir: "/tmp/work", Network: true},
			want:    want{status: http.StatusCreated, contentType: ctJSON, json: sampleInfoJSON},
		},
		{
			name:    "unknown fields are ignored",
			body:    `{"language":"python","gpu":true,"labels":{"A":"1"}}`,
			create:  created,
			wantReq: &contexts.CreateRequest{Language: "python"},
			want:    want{status: http.StatusCreated, contentType: ctJSON, json: sampleInfoJSON},
		},
		{
			name:    "env",
			body:    `{"env":{"API_KEY":"k=v; \"quoted\"","EMPTY":""}}`,
			create:  created,
			wantReq: &contexts.CreateRequest{Env: map[string]string{"API_KEY": `k=v; "quoted"`, "EMPTY": ""}},
			want:    want{status: http.StatusCreated, contentType: ctJSON, json: sampleInfoJSON},
		},
		{
			name: "env value is a number",
			body: `{"env":{"N":1}}`,
			want: want{status: http.StatusBadRequest, contentType: ctJSON, errCode: contexts.CodeInvalid, errMsg: "env"},
		},
		{
			name: "env is a list",
			body: `{"env":["A=1"]}`,
			want: want{status: http.StatusBadRequest, contentType: ctJSON, errCode: contexts.CodeInvalid, errMsg: `"env"`},
		},
		{
			name:    "body of exactly the limit",
			body:    exact,
			create:  created,
			wantReq: &contexts.CreateRequest{SessionName: strings.Repeat("s", maxBody-len(`{"session_name":""}`))},
			want:    want{status: http.StatusCreated, contentType: ctJSON, json: sampleInfoJSON},
		},
		{
			name:          "body of exactly the limit, unknown length",
			body:          exact,
			unknownLength: true,
			create:        created,
			wantReq:       &contexts.CreateRequest{SessionName: strings.Repeat("s", maxBody-len(`{"session_name":""}`))},
			want:          want{status: http.StatusCreated, contentType: ctJSON, json: sampleInfoJSON},
		},
		{
			name: "malformed JSON",
			body: `{"language":`,
			want: want{status: http.StatusBadRequest, contentType: ctJSON, errCode: contexts.CodeInvalid, errMsg: "not valid JSON"},
		},
		{
			name: "not JSON at all",
			body: `language=python`,
			want: want{status: http.StatusBadRequest, contentType: ctJSON, errCode: contexts.CodeInvalid, errMsg: "not valid JSON"},
		},
		{
			name: "language is a number",
			body: `{"language": 5}`,
			want: want{status: http.StatusBadRequest, contentType: ctJSON, errCode: contexts.CodeInvalid, errMsg: `"language"`},
		},
		{
			name: "working_dir is an object",
			body: `{"working_dir": {"path": "/tmp"}}`,
			want: want{status: http.StatusBadRequest, contentType: ctJSON, errCode: contexts.CodeInvalid, errMsg: `"working_dir"`},
		},
		{
			name:    "unsupported language",
			body:    `{"language":"ruby"}`,
			create:  failWith(contexts.Errorf(contexts.CodeUnsupportedLanguage, "unsupported language %q; available: python", "ruby")),
			wantReq: &contexts.CreateRequest{Language: "ruby"},
			want: want{status: http.StatusBadRequest, contentType: ctJSON,
				errObj: errBody(`unsupported language "ruby"; available: python`, contexts.CodeUnsupportedLanguage)},
		},
		{
			name: "working_dir outside /workspace and /tmp",
			body: `{"working_dir":"/workspace/../etc"}`,
			want: want{status: http.StatusBadRequest, contentType: ctJSON,
				errObj: errBody(`working_dir "/workspace/../etc" must be /workspace, /tmp or a directory below them`, contexts.CodeInvalid)},
		},
		{
			name: "bad env name",
			body: `{"env":{"A-B":"1"}}`,
			want: want{status: http.StatusBadRequest, contentType: ctJSON,
				errObj: errBody(`env name "A-B" must be letters, digits and underscores, not starting with a digit`, contexts.CodeInvalid)},
		},
		{
			name:    "docker unavailable",
			create:  failWith(&contexts.Error{Code: contexts.CodeRuntimeUnavailable, Message: "docker is down", Err: errors.New("secret socket path")}),
			wantReq: &contexts.CreateRequest{},
			want: want{status: http.StatusServiceUnavailable, contentType: ctJSON,
				errObj: errBody("docker is down", contexts.CodeRuntimeUnavailable), notContains: []string{"secret socket path"}},
		},
		{
			name:    "kernel unavailable",
			create:  failWith(contexts.Errorf(contexts.CodeKernelUnavailable, "the kernel did not start")),
			wantReq: &contexts.CreateRequest{},
			want: want{status: http.StatusServiceUnavailable, contentType: ctJSON,
				errObj: errBody("the kernel did not start", contexts.CodeKernelUnavailable)},
		},
		{
			name:    "wrapped coded error keeps its code",
			create:  failWith(fmt.Errorf("starting: %w", contexts.Errorf(contexts.CodeRuntimeUnavailable, "docker is down"))),
			wantReq: &contexts.CreateRequest{},
			want: want{status: http.StatusServiceUnavailable, contentType: ctJSON,
				errObj: errBody("docker is down", contexts.CodeRuntimeUnavailable)},
		},
		{
			name:    "plain error is hidden",
			create:  failWith(errors.New("boom secret detail")),
			wantReq: &contexts.CreateRequest{},
			want: want{status: http.StatusInternalServerError, contentType: ctJSON,
				errObj: errBody("internal error", contexts.CodeInternal), notContains: []string{"boom secret detail", "boom"}},
		},
		{
			name:    "coded error with an unknown code is hidden",
			create:  failWith(&contexts.Error{Code: "SOMETHING_NEW", Message: "new secret detail"}),
			wantReq: &contexts.CreateRequest{},
			want: want{status: http.StatusInternalServerError, contentType: ctJSON,
				errObj: errBody("internal error", contexts.CodeInternal), notContains: []string{"new secret detail"}},
		},
		{
			name: "too large, Content-Length set",
			body: tooLarge,
			want: want{status: http.StatusRequestEntityTooLarge, contentType: ctJSON,
				errObj: errBody("request body is larger than 1024 bytes", codeTooLarge)},
		},
		{
			name:          "too large, unknown length",
			body:          tooLarge,
			unknownLength: true,
			want: want{status: http.StatusRequestEntityTooLarge, contentType: ctJSON,
				errObj: errBody("request body is larger than 1024 bytes", codeTooLarge)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, &fakeService{create: tt.create})
			got := s.do(t, request{method: http.MethodPost, path: "/api/v1/contexts", body: tt.body, unknownLength: tt.unknownLength})
			checkResponse(t, got, tt.want)

			var wantCalls []contexts.CreateRequest
			if tt.wantReq != nil {
				wantCalls = []contexts.CreateRequest{*tt.wantReq}
			}
			if !reflect.DeepEqual(s.fake.creates, wantCalls) {
				t.Errorf("Create calls = %+v, want %+v", s.fake.creates, wantCalls)
			}
		})
	}
}

// TestCreateContextTimes checks the time format on its own, beyond the
// comparison by value: RFC 3339, UTC, whole seconds.
func TestCreateContextTimes(t *testing.T) {
	s := newTestServer(t, &fakeService{create: func(context.Context, contexts.CreateRequest) (contexts.Info, error) {
		return sampleInfo(), nil
	}})
	got := s.do(t, request{method: http.MethodPost, path: "/api/v1/contexts", body: `{}`})
	if got.status != http.StatusCreated {
		t.Fatalf("status = %d, want 201; body %s", got.status, got.body)
	}
	var body map[string]any
	if err := json.Unmarshal(got.body, &body); err != nil {
		t.Fatalf("body %s: %v", got.body, err)
	}
	for field, want := range map[string]time.Time{
		"created_at":    sampleInfo().CreatedAt.Truncate(time.Second),
		"last_activity": sampleInfo().LastActivity,
	} {
		v, _ := body[field].(string)
		if !strings.HasSuffix(v, "Z") {
			t.Errorf("%s = %q, want a UTC time ending in Z", field, v)
		}
		ts, err := time.Parse(time.RFC3339, v)
		if err != nil {
			t.Errorf("%s = %q is not RFC 3339: %v", field, v, err)
			continue
		}
		if !ts.Equal(want) {
			t.Errorf("%s = %v, want %v", field, ts, want)
		}
	}
}

func TestListContexts(t *testing.T) {
	second := sampleInfo()
	second.ID = "ctx-00000000-0000-4000-8000-000000000001"
	second.SessionName = "other"
	second.WorkingDir = "/tmp"
	second.Status = contexts.StatusBusy
	second.ExecutionCount = 0
	second.CreatedAt = time.Date(2025, 1, 16, 8, 0, 0, 0, time.UTC)
	second.LastActivity = second.CreatedAt

	tests := []struct {
		name  string
		infos []contexts.Info
		want  want
	}{
		{
			name:  "nil list",
			infos: nil,
			want:  want{status: http.StatusOK, contentType: ctJSON, text: `{"contexts":[]}` + "\n"},
		},
		{
			name:  "empty list",
			infos: []contexts.Info{},
			want:  want{status: http.StatusOK, contentType: ctJSON, text: `{"contexts":[]}` + "\n"},
		},
		{
			name:  "two contexts in order",
			infos: []contexts.Info{sampleInfo(), second},
			want: want{status: http.StatusOK, contentType: ctJSON, json: `{"contexts":[` + sampleInfoJSON + `,{
				"context_id": "ctx-00000000-0000-4000-8000-000000000001",
				"type": "jupyter",
				"language": "python",
				"session_name": "other",
				"working_dir": "/tmp",
				"status": "busy",
				"created_at": "2025-01-16T08:00:00Z",
				"last_activity": "2025-01-16T08:00:00Z",
				"execution_count": 0,
				"restarts": 2,
				"network": false
			}]}`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, &fakeService{list: func() []contexts.Info { return tt.infos }})
			got := s.do(t, request{method: http.MethodGet, path: "/api/v1/contexts"})
			checkResponse(t, got, tt.want)
			if s.fake.lists != 1 {
				t.Errorf("List called %d times, want 1", s.fake.lists)
			}
		})
	}
}

func TestGetAndDeleteContext(t *testing.T) {
	found := func(id string) (contexts.Info, error) {
		i := sampleInfo()
		i.ID = id
		return i, nil
	}
	notFoundBody := errBody("Context not found", contexts.CodeNotFound)
	tests := []struct {
		name   string
		method string
		id     string
		get    func(string) (contexts.Info, error)
		del    func(context.Context, string) error
		want   want
	}{
		{
			name:   "get found",
			method: http.MethodGet,
			id:     ctxID,
			get:    found,
			want:   want{status: http.StatusOK, contentType: ctJSON, json: sampleInfoJSON},
		},
		{
			name:   "get not found",
			method: http.MethodGet,
			id:     "ctx-00000000-0000-4000-8000-00000000dead",
			get:    notFound,
			want:   want{status: http.StatusNotFound, contentType: ctJSON, errObj: notFoundBody},
		},
		{
			name:   "get id of another shape",
			method: http.MethodGet,
			id:     "not-a-context",
			get:    notFound,
			want:   want{status: http.StatusNotFound, contentType: ctJSON, errObj: notFoundBody},
		},
		{
			name:   "get id with capitals and punctuation",
			method: http.MethodGet,
			id:     "Ctx-ABC_123.x~Y",
			get:    notFound,
			want:   want{status: http.StatusNotFound, contentType: ctJSON, errObj: notFoundBody},
		},
		{
			name:   "delete found",
			method: http.MethodDelete,
			id:     ctxID,
			del:    func(context.Context, string) error { return nil },
			want:   want{status: http.StatusNoContent, contentType: "", noBody: true},
		},
		{
			name:   "delete not found",
			method: http.MethodDelete,
			id:     "ctx-00000000-0000-4000-8000-00000000dead",
			del: func(context.Context, string) error {
				return contexts.Errorf(contexts.CodeNotFound, "Context not found")
			},
			want: want{status: http.StatusNotFound, contentType: ctJSON, errObj: notFoundBody},
		},
		{
			name:   "delete id with capitals and punctuation",
			method: http.MethodDelete,
			id:     "CTX-Upper_Case.1~2",
			del: func(context.Context, string) error {
				return contexts.Errorf(contexts.CodeNotFound, "Context not found")
			},
			want: want{status: http.StatusNotFound, contentType: ctJSON, errObj: notFoundBody},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, &fakeService{get: tt.get, del: tt.del})
			got := s.do(t, request{method: tt.method, path: "/api/v1/contexts/" + tt.id})
			checkResponse(t, got, tt.want)

			var wantGets, wantDeletes []string
			if tt.method == http.MethodGet {
				wantGets = []string{tt.id}
			} else {
				wantDeletes = []string{tt.id}
			}
			if !reflect.DeepEqual(s.fake.gets, wantGets) {
				t.Errorf("Get calls = %q, want %q", s.fake.gets, wantGets)
			}
			if !reflect.DeepEqual(s.fake.deletes, wantDeletes) {
				t.Errorf("Delete calls = %q, want %q", s.fake.deletes, wantDeletes)
			}
		})
	}
}

func TestExecuteRequest(t *testing.T) {
	ok := func(context.Context, string, contexts.ExecuteRequest) (contexts.Execution, error) {
		return contexts.Execution{Result: kernel.Result{Status: "ok", ExecutionCount: intPtr(1)}}, nil
	}
	okJSON := `{"output":{"stdout":"","stderr":""},"success":true,"execution_time":0,"execution_count":1,"results":[]}`
	invalid := func(msg string) want {
		return want{status: http.StatusBadRequest, contentType: ctJSON, errCode: contexts.CodeInvalid, errMsg: msg}
	}
	tests := []struct {
		name          string
		id            string // ctxID when empty
		body          string
		unknownLength bool
		execute       func(context.Context, string, contexts.ExecuteRequest) (contexts.Execution, error)
		wantReq       *contexts.ExecuteRequest // nil: Execute must not be called
		want          want
	}{
		{
			name:    "code and timeout",
			body:    `{"code":"print(1)","timeout":30}`,
			execute: ok,
			wantReq: &contexts.ExecuteRequest{Code: "print(1)", Timeout: 30 * time.Second},
			want:    want{status: http.StatusOK, contentType: ctJSON, json: okJSON},
		},
		{
			name:    "no timeout",
			body:    `{"code":"print(1)"}`,
			execute: ok,
			wantReq: &contexts.ExecuteRequest{Code: "print(1)"},
			want:    want{status: http.StatusOK, contentType: ctJSON, json: okJSON},
		},
		{
			name:    "fractional timeout",
			body:    `{"code":"print(1)","timeout":0.5}`,
			execute: ok,
			wantReq: &contexts.ExecuteRequest{Code: "print(1)", Timeout: 500 * time.Millisecond},
			want:    want{status: http.StatusOK, contentType: ctJSON, json: okJSON},
		},
		{
			name:    "empty code is passed on",
			body:    `{"code":""}`,
			execute: ok,
			wantReq: &contexts.ExecuteRequest{Code: ""},
			want:    want{status: http.StatusOK, contentType: ctJSON, json: okJSON},
		},
		{
			name:    "code with newlines and unicode",
			body:    `{"code":"for i in range(2):\n    print('é', i)\n","extra":1}`,
			execute: ok,
			wantReq: &contexts.ExecuteRequest{Code: "for i in range(2):\n    print('é', i)\n"},
			want:    want{status: http.StatusOK, contentType: ctJSON, json: okJSON},
		},
		{
			name:    "env for one execution",
			body:    `{"code":"import os","env":{"DEBUG":"1"}}`,
			execute: ok,
			wantReq: &contexts.ExecuteRequest{Code: "import os", Env: map[string]string{"DEBUG": "1"}},
			want:    want{status: http.StatusOK, contentType: ctJSON, json: okJSON},
		},
		{
			name: "env is a string",
			body: `{"code":"1","env":"DEBUG=1"}`,
			want: invalid(`"env"`),
		},
		{
			name: "missing code",
			body: `{"timeout":5}`,
			want: invalid(`"code" is required`),
		},
		{
			name: "null code",
			body: `{"code":null}`,
			want: invalid(`"code" is required`),
		},
		{
			name: "empty body",
			want: invalid(`"code" is required`),
		},
		{
			name: "zero timeout",
			body: `{"code":"print(1)","timeout":0}`,
			want: invalid(`"timeout"`),
		},
		{
			name: "negative timeout",
			body: `{"code":"print(1)","timeout":-1}`,
			want: invalid(`"timeout"`),
		},
		{
			name: "code is a number",
			body: `{"code":5}`,
			want: invalid(`"code"`),
		},
		{
			name: "timeout is a string",
			body: `{"code":"print(1)","timeout":"30"}`,
			want: invalid(`"timeout"`),
		},
		{
			name: "malformed JSON",
			body: `{"code":"print(1)"`,
			want: invalid("not valid JSON"),
		},
		{
			name: "too large",
			body: `{"code":"` + strings.Repeat("#", maxBody) + `"}`,
			want: want{status: http.StatusRequestEntityTooLarge, contentType: ctJSON,
				errObj: errBody("request body is larger than 1024 bytes", codeTooLarge)},
		},
		{
			name:          "too large, unknown length",
			body:          `{"code":"` + strings.Repeat("#", maxBody) + `"}`,
			unknownLength: true,
			want: want{status: http.StatusRequestEntityTooLarge, contentType: ctJSON,
				errObj: errBody("request body is larger than 1024 bytes", codeTooLarge)},
		},
		{
			name: "unknown context",
			id:   "Ctx-Unknown_1.2~3",
			body: `{"code":"print(1)"}`,
			execute: func(context.Context, string, contexts.ExecuteRequest) (contexts.Execution, error) {
				return contexts.Execution{}, contexts.Errorf(contexts.CodeNotFound, "Context not found")
			},
			wantReq: &contexts.ExecuteRequest{Code: "print(1)"},
			want: want{status: http.StatusNotFound, contentType: ctJSON,
				errObj: errBody("Context not found", contexts.CodeNotFound)},
		},
		{
			name: "timeout above the maximum",
			body: `{"code":"print(1)","timeout":3600}`,
			execute: func(context.Context, string, contexts.ExecuteRequest) (contexts.Execution, error) {
				return contexts.Execution{}, contexts.Errorf(contexts.CodeInvalid, "timeout must be more than 0 and at most 300 seconds")
			},
			wantReq: &contexts.ExecuteRequest{Code: "print(1)", Timeout: time.Hour},
			want: want{status: http.StatusBadRequest, contentType: ctJSON,
				errObj: errBody("timeout must be more than 0 and at most 300 seconds", contexts.CodeInvalid)},
		},
		{
			name: "kernel unavailable",
			body: `{"code":"print(1)"}`,
			execute: func(context.Context, string, contexts.ExecuteRequest) (contexts.Execution, error) {
				return contexts.Execution{}, &contexts.Error{Code: contexts.CodeKernelUnavailable, Message: "the kernel cannot be reached", Err: errors.New("websocket: close 1006")}
			},
			wantReq: &contexts.ExecuteRequest{Code: "print(1)"},
			want: want{status: http.StatusServiceUnavailable, contentType: ctJSON,
				errObj: errBody("the kernel cannot be reached", contexts.CodeKernelUnavailable), notContains: []string{"websocket"}},
		},
		{
			name: "plain error is hidden",
			body: `{"code":"print(1)"}`,
			execute: func(context.Context, string, contexts.ExecuteRequest) (contexts.Execution, error) {
				return contexts.Execution{}, errors.New("boom secret detail")
			},
			wantReq: &contexts.ExecuteRequest{Code: "print(1)"},
			want: want{status: http.StatusInternalServerError, contentType: ctJSON,
				errObj: errBody("internal error", contexts.CodeInternal), notContains: []string{"boom secret detail"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := tt.id
			if id == "" {
				id = ctxID
			}
			s := newTestServer(t, &fakeService{execute: tt.execute})
			got := s.do(t, request{method: http.MethodPost, path: "/api/v1/contexts/" + id + "/execute", body: tt.body, unknownLength: tt.unknownLength})
			checkResponse(t, got, tt.want)

			var wantCalls []executeCall
			if tt.wantReq != nil {
				wantCalls = []executeCall{{ID: id, Req: *tt.wantReq}}
			}
			if !reflect.DeepEqual(s.fake.executes, wantCalls) {
				t.Errorf("Execute calls = %+v, want %+v", s.fake.executes, wantCalls)
			}
		})
	}
}

func TestExecuteResponse(t *testing.T) {
	// appJSON is not in the form encoding/json would write it (2.50, an
	// escaped é, a "<"), so a decode and re-encode would show.
	const appJSON = `{"a":[1,2.50],"b":{"c":null},"d":"<x>","s":"caf\u00e9"}`
	const meta = `{"isolated":true,"width":640}`
	tests := []struct {
		name string
		exe  contexts.Execution
		want string // JSON, compared by value
		// raw lists substrings the raw body must contain, byte for byte.
		raw []string
	}{
		{
			name: "success with output and results",
			exe: contexts.Execution{
				Result: kernel.Result{
					Stdout: "if a < b && c > d:\n",
					Stderr: "warning: <deprecated>\n",
					Outputs: []kernel.Output{
						{
							Type: "execute_result",
							Data: map[string]json.RawMessage{
								"text/plain":       json.RawMessage(`"2"`),
								"application/json": json.RawMessage(appJSON),
							},
							Metadata: json.RawMessage(meta),
						},
						{
							Type: "display_data",
							Data: map[string]json.RawMessage{"text/html": json.RawMessage(`"<b>bold</b> & more"`)},
						},
					},
					ExecutionCount: intPtr(7),
					Status:         "ok",
				},
				Duration: 1500 * time.Millisecond,
			},
			want: `{
				"output": {"stdout": "if a < b && c > d:\n", "stderr": "warning: <deprecated>\n"},
				"success": true,
				"execution_time": 1.5,
				"execution_count": 7,
				"results": [
					{"type": "execute_result", "data": {"text/plain": "2", "application/json": ` + appJSON + `}, "metadata": ` + meta + `},
					{"type": "display_data", "data": {"text/html": "<b>bold</b> & more"}}
				]
			}`,
			raw: []string{
				`"application/json":` + appJSON,
				`"metadata":` + meta,
				`"stdout":"if a < b && c > d:\n"`,
				`"text/html":"<b>bold</b> & more"`,
			},
		},
		{
			name: "no results is an empty array",
			exe: contexts.Execution{
				Result:   kernel.Result{Stdout: "1\n", Status: "ok", ExecutionCount: intPtr(1)},
				Duration: 12 * time.Millisecond,
			},
			want: `{"output":{"stdout":"1\n","stderr":""},"success":true,"execution_time":0.012,"execution_count":1,"results":[]}`,
			raw:  []string{`"results":[]`},
		},
		{
			name: "code raised",
			exe: contexts.Execution{
				Result: kernel.Result{
					Stderr:         "ZeroDivisionError: division by zero\n",
					Error:          &kernel.Error{Name: "ZeroDivisionError", Value: "division by zero", Traceback: "----> 1 1/0\n\nZeroDivisionError: division by zero"},
					ExecutionCount: intPtr(3),
					Status:         "error",
				},
				Duration: 9 * time.Millisecond,
			},
			want: `{
				"output": {"stdout": "", "stderr": "ZeroDivisionError: division by zero\n"},
				"success": false,
				"execution_time": 0.009,
				"execution_count": 3,
				"results": [],
				"error": {"name": "ZeroDivisionError", "value": "division by zero", "traceback": "----> 1 1/0\n\nZeroDivisionError: division by zero"}
			}`,
			raw: []string{`"traceback":"----> 1 1/0\n\nZeroDivisionError: division by zero"`},
		},
		{
			name: "timed out without a reply",
			exe: contexts.Execution{
				Result: kernel.Result{
					Stderr: "TimeoutError: execution exceeded the timeout of 1s\n",
					Error:  &kernel.Error{Name: kernel.ErrTimeout, Value: "execution exceeded the timeout of 1s"},
				},
				Duration: 1003 * time.Millisecond,
			},
			want: `{
				"output": {"stdout": "", "stderr": "TimeoutError: execution exceeded the timeout of 1s\n"},
				"success": false,
				"execution_time": 1.003,
				"execution_count": null,
				"results": [],
				"error": {"name": "TimeoutError", "value": "execution exceeded the timeout of 1s", "traceback": ""}
			}`,
		},
		{
			name: "error status without an error message",
			exe:  contexts.Execution{Result: kernel.Result{Status: "error", ExecutionCount: intPtr(2)}},
			want: `{"output":{"stdout":"","stderr":""},"success":false,"execution_time":0,"execution_count":2,"results":[]}`,
		},
		{
			name: "aborted",
			exe:  contexts.Execution{Result: kernel.Result{Status: "aborted"}},
			want: `{"output":{"stdout":"","stderr":""},"success":false,"execution_time":0,"execution_count":null,"results":[]}`,
		},
		{
			name: "error despite an ok reply",
			exe: contexts.Execution{Result: kernel.Result{
				Status: "ok", ExecutionCount: intPtr(5),
				Error: &kernel.Error{Name: kernel.ErrKernelDied, Value: "the kernel died"},
			}},
			want: `{"output":{"stdout":"","stderr":""},"success":false,"execution_time":0,"execution_count":5,"results":[],
				"error":{"name":"KernelDied","value":"the kernel died","traceback":""}}`,
		},
		{
			name: "kernel restarted",
			exe: contexts.Execution{
				Result: kernel.Result{
					Error:     &kernel.Error{Name: kernel.ErrKernelDied, Value: "the kernel died and was restarted"},
					Restarted: true,
				},
				Duration: 2 * time.Second,
			},
			want: `{"output":{"stdout":"","stderr":""},"success":false,"execution_time":2,"execution_count":null,"results":[],
				"error":{"name":"KernelDied","value":"the kernel died and was restarted","traceback":""},"restarted":true}`,
		},
		{
			name: "truncated",
			exe: contexts.Execution{
				Result:   kernel.Result{Stdout: "xxxx\n[output truncated]\n", Truncated: true, Status: "ok", ExecutionCount: intPtr(4)},
				Duration: 250 * time.Millisecond,
			},
			want: `{"output":{"stdout":"xxxx\n[output truncated]\n","stderr":""},"success":true,"execution_time":0.25,"execution_count":4,"results":[],"truncated":true}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, &fakeService{execute: func(context.Context, string, contexts.ExecuteRequest) (contexts.Execution, error) {
				return tt.exe, nil
			}})
			got := s.do(t, request{method: http.MethodPost, path: "/api/v1/contexts/" + ctxID + "/execute", body: `{"code":"x"}`})
			checkResponse(t, got, want{
				status: http.StatusOK, contentType: ctJSON, json: tt.want,
				notContains: []string{`\u003c`, `\u003e`, `\u0026`},
			})
			for _, r := range tt.raw {
				if !strings.Contains(string(got.body), r) {
					t.Errorf("body %s\ndoes not contain, byte for byte, %s", got.body, r)
				}
			}
		})
	}
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestTooLargeByContentLength checks that a body whose Content-Length is over
// the limit is refused before any of it is read.
func TestTooLargeByContentLength(t *testing.T) {
	tests := []struct {
		name string
		path string
	}{
		{name: "create", path: "/api/v1/contexts"},
		{name: "execute", path: "/api/v1/contexts/" + ctxID + "/execute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, nil)
			body := `{"code":"` + strings.Repeat("#", 2*maxBody) + `"}`
			cr := &countingReader{r: strings.NewReader(body)}
			req := httptest.NewRequest(http.MethodPost, tt.path, cr)
			req.ContentLength = int64(len(body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			s.h.ServeHTTP(rec, req)
			resp := rec.Result()
			respBody, _ := io.ReadAll(resp.Body)
			s.v.Check(t, req, []byte(body), resp, respBody)

			checkResponse(t, response{status: resp.StatusCode, header: resp.Header, body: respBody}, want{
				status: http.StatusRequestEntityTooLarge, contentType: ctJSON,
				errObj: errBody("request body is larger than 1024 bytes", codeTooLarge),
			})
			if cr.n != 0 {
				t.Errorf("the handler read %d bytes of a body declared too large", cr.n)
			}
			if len(s.fake.creates)+len(s.fake.executes) != 0 {
				t.Errorf("the service was called: creates %v, executes %v", s.fake.creates, s.fake.executes)
			}
		})
	}
}

// The create answer says whether the kernel came from the pool; a full
// daemon answers 429; GET /api/v1/pool tells how full the pools are.
func TestPool(t *testing.T) {
	for _, pooled := range []bool{true, false} {
		s := newTestServer(t, &fakeService{create: func(context.Context, contexts.CreateRequest) (contexts.Info, error) {
			c := sampleInfo()
			c.Pooled = pooled
			return c, nil
		}})
		got := s.do(t, request{method: http.MethodPost, path: "/api/v1/contexts"})
		if h, want := got.header.Get("Sandboxd-Pool"), map[bool]string{true: "hit", false: "miss"}[pooled]; h != want {
			t.Errorf("pooled=%v: Sandboxd-Pool %q, want %q", pooled, h, want)
		}
	}

	s := newTestServer(t, &fakeService{create: func(context.Context, contexts.CreateRequest) (contexts.Info, error) {
		return contexts.Info{}, contexts.Errorf(contexts.CodeTooManyContexts, "full")
	}})
	checkResponse(t, s.do(t, request{method: http.MethodPost, path: "/api/v1/contexts"}), want{
		status: http.StatusTooManyRequests, contentType: ctJSON, errObj: errBody("full", contexts.CodeTooManyContexts),
	})
	checkResponse(t, s.do(t, request{method: http.MethodGet, path: "/api/v1/pool"}), want{
		status: http.StatusOK, contentType: ctJSON, json: `{"pools":[{"language":"python","size":2,"ready":1}]}`,
	})
}

func TestListLanguages(t *testing.T) {
	s := newTestServer(t, &fakeService{languages: func(context.Context) ([]contexts.LanguageStatus, error) {
		return []contexts.LanguageStatus{{Name: "python", Image: "py:1", Installed: true}, {Name: "r", Image: "r:1"}}, nil
	}})
	checkResponse(t, s.do(t, request{method: http.MethodGet, path: "/api/v1/languages"}), want{
		status: http.StatusOK, contentType: ctJSON,
		json: `{"languages":[{"name":"python","image":"py:1","installed":true},{"name":"r","image":"r:1","installed":false}]}`,
	})
	s = newTestServer(t, &fakeService{languages: func(context.Context) ([]contexts.LanguageStatus, error) {
		return nil, contexts.Errorf(contexts.CodeRuntimeUnavailable, "down")
	}})
	checkResponse(t, s.do(t, request{method: http.MethodGet, path: "/api/v1/languages"}), want{
		status: http.StatusServiceUnavailable, contentType: ctJSON, errObj: errBody("down", contexts.CodeRuntimeUnavailable),
	})
}

// A context being taken over after a restart answers what needs its kernel
// with 503 CONTEXT_RECOVERING and a Retry-After, blocking, streamed or
// over a websocket.
func TestContextRecovering(t *testing.T) {
	recovering := func(string) (contexts.Info, error) {
		return contexts.Info{ID: ctxID, Language: "python", Status: contexts.StatusRecovering}, nil
	}
	execute := func(context.Context, string, contexts.ExecuteRequest) (contexts.Execution, error) {
		return contexts.Execution{}, contexts.ErrRecovering
	}
	for _, r := range []request{
		{method: http.MethodPost, path: "/api/v1/contexts/" + ctxID + "/execute", body: `{"code":"1"}`},
		{method: http.MethodPost, path: "/api/v1/contexts/" + ctxID + "/execute", body: `{"code":"1"}`, header: http.Header{"Accept": {"text/event-stream"}}},
		{method: http.MethodGet, path: "/api/v1/contexts/" + ctxID + "/ws", header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}},
	} {
		s := newTestServer(t, &fakeService{get: recovering, execute: execute})
		got := s.do(t, r)
		checkResponse(t, got, want{status: http.StatusServiceUnavailable, contentType: ctJSON,
			errObj: errBody(contexts.ErrRecovering.Message, contexts.CodeContextRecovering)})
		if got.header.Get("Retry-After") == "" {
			t.Errorf("%s %s: no Retry-After", r.method, r.path)
		}
	}
}

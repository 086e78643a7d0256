package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandboxd/sandboxd/internal/apitest"
	"github.com/sandboxd/sandboxd/internal/contexts"
)

// fakeService is a contextService whose answers are set per test and which
// records every call it gets. A method whose function is nil fails with
// errUnexpectedCall, which the handlers turn into a 500.
type fakeService struct {
	create    func(ctx context.Context, req contexts.CreateRequest) (contexts.Info, error)
	get       func(id string) (contexts.Info, error)
	list      func() []contexts.Info
	del       func(ctx context.Context, id string) error
	execute   func(ctx context.Context, id string, req contexts.ExecuteRequest) (contexts.Execution, error)
	interrupt func(ctx context.Context, id string) error
	restart   func(ctx context.Context, id string) (contexts.Info, error)
	ping      func(ctx context.Context) error
	languages func(ctx context.Context) ([]contexts.LanguageStatus, error)
	history   func(id string, before int64, limit int) (contexts.HistoryPage, error)
	events    chan contexts.Event
	fakeFiles // the file and command methods, in files_test.go
	// The AgentRun file system and process methods: nil, as they are
	// tested end to end, in cmd/sandboxd.
	agentRunService

	mu         sync.Mutex
	creates    []contexts.CreateRequest
	gets       []string
	lists      int
	deletes    []string
	executes   []executeCall
	interrupts []string
	restarts   []string
	pings      int
}

// calls is how many calls the fake got in all.
func (f *fakeService) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.creates) + len(f.gets) + f.lists + len(f.deletes) + len(f.executes) + len(f.interrupts) + len(f.restarts) + f.pings
}

var _ contextService = (*fakeService)(nil)

// executeCall is one recorded call to fakeService.Execute.
type executeCall struct {
	ID  string
	Req contexts.ExecuteRequest
}

var errUnexpectedCall = errors.New("fakeService: unexpected call")

func (f *fakeService) History(id string, before int64, limit int) (contexts.HistoryPage, error) {
	if f.history == nil {
		return contexts.HistoryPage{}, errUnexpectedCall
	}
	return f.history(id, before, limit)
}

// Subscribe hands out f.events, which the test closes to end the stream.
func (f *fakeService) Subscribe() (<-chan contexts.Event, func()) {
	if f.events == nil {
		ch := make(chan contexts.Event)
		close(ch)
		return ch, func() {}
	}
	return f.events, func() {}
}

func (f *fakeService) Create(ctx context.Context, req contexts.CreateRequest) (contexts.Info, error) {
	f.mu.Lock()
	f.creates = append(f.creates, req)
	fn := f.create
	f.mu.Unlock()
	if fn == nil {
		return contexts.Info{}, errUnexpectedCall
	}
	return fn(ctx, req)
}

func (f *fakeService) Get(id string) (contexts.Info, error) {
	f.mu.Lock()
	f.gets = append(f.gets, id)
	fn := f.get
	f.mu.Unlock()
	if fn == nil {
		return contexts.Info{}, errUnexpectedCall
	}
	return fn(id)
}

func (f *fakeService) List() []contexts.Info {
	f.mu.Lock()
	f.lists++
	fn := f.list
	f.mu.Unlock()
	if fn == nil {
		panic(errUnexpectedCall)
	}
	return fn()
}

func (f *fakeService) Delete(ctx context.Context, id string) error {
	f.mu.Lock()
	f.deletes = append(f.deletes, id)
	fn := f.del
	f.mu.Unlock()
	if fn == nil {
		return errUnexpectedCall
	}
	return fn(ctx, id)
}

func (f *fakeService) Execute(ctx context.Context, id string, req contexts.ExecuteRequest) (contexts.Execution, error) {
	f.mu.Lock()
	f.executes = append(f.executes, executeCall{ID: id, Req: req})
	fn := f.execute
	f.mu.Unlock()
	if fn == nil {
		return contexts.Execution{}, errUnexpectedCall
	}
	return fn(ctx, id, req)
}

// Timeout bounds timeouts as a Manager with the default flags does.
func (f *fakeService) Timeout(d time.Duration) (time.Duration, error) {
	switch {
	case d == 0:
		return 30 * time.Second, nil
	case d < 0 || d > time.Hour:
		return 0, contexts.Errorf(contexts.CodeInvalid, "timeout must be more than 0 and at most 3600 seconds")
	}
	return d, nil
}

func (f *fakeService) Interrupt(ctx context.Context, id string) error {
	f.mu.Lock()
	f.interrupts = append(f.interrupts, id)
	fn := f.interrupt
	f.mu.Unlock()
	if fn == nil {
		return errUnexpectedCall
	}
	return fn(ctx, id)
}

func (f *fakeService) Restart(ctx context.Context, id string) (contexts.Info, error) {
	f.mu.Lock()
	f.restarts = append(f.restarts, id)
	fn := f.restart
	f.mu.Unlock()
	if fn == nil {
		return contexts.Info{}, errUnexpectedCall
	}
	return fn(ctx, id)
}

func (f *fakeService) Ping(ctx context.Context) error {
	f.mu.Lock()
	f.pings++
	fn := f.ping
	f.mu.Unlock()
	if fn == nil {
		return errUnexpectedCall
	}
	return fn(ctx)
}

func (f *fakeService) Languages(ctx context.Context) ([]contexts.LanguageStatus, error) {
	f.mu.Lock()
	fn := f.languages
	f.mu.Unlock()
	if fn == nil {
		return nil, errUnexpectedCall
	}
	return fn(ctx)
}

func (f *fakeService) Pools() []contexts.PoolStatus {
	return []contexts.PoolStatus{{Language: "python", Size: 2, Ready: 1}}
}

// testServer is the handler under test with its fake, metrics registry and
// OpenAPI validator.
type testServer struct {
	h    http.Handler
	fake *fakeService
	reg  *prometheus.Registry
	v    *apitest.Validator
}

const maxBody = 1024

func newTestServer(tb testing.TB, fake *fakeService) *testServer {
	tb.Helper()
	if fake == nil {
		fake = &fakeService{}
	}
	reg := prometheus.NewRegistry()
	// httptest's requests are for example.com.
	h := NewHandler(slog.New(slog.DiscardHandler), fake, Config{MaxBodyBytes: maxBody, Registry: reg, AllowedHosts: []string{"example.com"}})
	return &testServer{h: h, fake: fake, reg: reg, v: validator(tb)}
}

func init() {
	// kin-openapi has no decoder for text/event-stream, which the document
	// gives to executeCode's streamed answer as a plain string; without one
	// apitest fails every streamed response.
	if openapi3filter.RegisteredBodyDecoder("text/event-stream") == nil {
		openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
	}
}

var (
	validatorOnce sync.Once
	sharedValid   *apitest.Validator
)

// validator returns the OpenAPI validator, loaded once: loading validates
// the whole document, which is slow under -race.
func validator(tb testing.TB) *apitest.Validator {
	tb.Helper()
	validatorOnce.Do(func() { sharedValid = apitest.New(tb) })
	if sharedValid == nil {
		tb.Fatal("api/openapi.yaml could not be loaded (see the first failing test)")
	}
	return sharedValid
}

// request is one request to send to the handler.
type request struct {
	method string
	path   string
	body   string
	// unknownLength sends the body without a Content-Length, as a chunked
	// request would arrive.
	unknownLength bool
	header        http.Header
}

// response is what the handler answered, body read.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends r to the handler and checks the exchange against the OpenAPI
// document.
func (s *testServer) do(tb testing.TB, r request) response {
	tb.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
		if r.unknownLength {
			// Not a *strings.Reader: httptest.NewRequest sets ContentLength -1.
			body = io.MultiReader(body)
		}
	}
	req := httptest.NewRequest(r.method, r.path, body)
	if r.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	if r.unknownLength && req.ContentLength != -1 {
		tb.Fatalf("request with unknown length has ContentLength %d", req.ContentLength)
	}
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	resp := rec.Result()
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: reading response body: %v", r.method, r.path, err)
	}
	s.v.Check(tb, req, []byte(r.body), resp, respBody)
	return response{status: resp.StatusCode, header: resp.Header, body: respBody}
}

const (
	ctJSON = "application/json"
	ctText = "text/plain; charset=utf-8"
)

// want describes an expected response.
type want struct {
	status      int
	contentType string // exact; "" means no Content-Type header
	// Exactly one of the following describes the body.
	text   string // exact body, for text/plain answers
	json   string // JSON body, compared by value (numbers as written)
	errObj *errorResponse
	// errCode with errMsg checks an error body whose message is only
	// partly known: its code is errCode and its message contains errMsg.
	errCode string
	errMsg  string
	noBody  bool
	// notContains lists strings the raw body must not hold.
	notContains []string
}

// errBody is an error body with an exact message and code.
func errBody(msg, code string) *errorResponse { return &errorResponse{Error: msg, Code: code} }

func checkResponse(tb testing.TB, got response, w want) {
	tb.Helper()
	if got.status != w.status {
		tb.Errorf("status = %d, want %d; body: %s", got.status, w.status, got.body)
	}
	if ct := got.header.Get("Content-Type"); ct != w.contentType {
		tb.Errorf("Content-Type = %q, want %q", ct, w.contentType)
	}
	switch {
	case w.noBody:
		if len(got.body) != 0 {
			tb.Errorf("body = %q, want none", got.body)
		}
	case w.json != "":
		checkJSONEqual(tb, got.body, w.json)
	case w.errObj != nil:
		e := decodeError(tb, got.body)
		if e != *w.errObj {
			tb.Errorf("error body = %+v, want %+v", e, *w.errObj)
		}
	case w.errCode != "":
		e := decodeError(tb, got.body)
		if e.Code != w.errCode {
			tb.Errorf("error code = %q, want %q (message %q)", e.Code, w.errCode, e.Error)
		}
		if !strings.Contains(e.Error, w.errMsg) {
			tb.Errorf("error message = %q, want it to contain %q", e.Error, w.errMsg)
		}
	default:
		if string(got.body) != w.text {
			tb.Errorf("body = %q, want %q", got.body, w.text)
		}
	}
	for _, s := range w.notContains {
		if bytes.Contains(got.body, []byte(s)) {
			tb.Errorf("body %s contains %q", got.body, s)
		}
	}
}

// decodeError decodes an error body strictly: exactly the fields error and
// code, and nothing after the object.
func decodeError(tb testing.TB, body []byte) errorResponse {
	tb.Helper()
	var e errorResponse
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		tb.Errorf("error body %q is not an error object: %v", body, err)
		return e
	}
	if dec.More() {
		tb.Errorf("error body %q has data after the object", body)
	}
	if e.Error == "" || e.Code == "" {
		tb.Errorf("error body %q lacks error or code", body)
	}
	return e
}

// checkJSONEqual compares two JSON documents by value. Numbers are compared
// as written, so 2.50 and 2.5 differ.
func checkJSONEqual(tb testing.TB, got []byte, want string) {
	tb.Helper()
	g, err := decodeJSON(got)
	if err != nil {
		tb.Errorf("body %q is not JSON: %v", got, err)
		return
	}
	w, err := decodeJSON([]byte(want))
	if err != nil {
		tb.Fatalf("bad test: want %q is not JSON: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		tb.Errorf("body =\n%s\nwant\n%s", got, want)
	}
}

func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("data after the JSON value")
	}
	return v, nil
}

const ctxID = "ctx-3f2b8c1e-9a4d-4e7b-8c21-5d6f7a8b9c0d"

// sampleInfo is a context whose times are not in UTC and carry sub-second
// parts, to check that responses show them as RFC 3339 UTC seconds.
func sampleInfo() contexts.Info {
	cet := time.FixedZone("CET", 3600)
	return contexts.Info{
		ID:             ctxID,
		Type:           "jupyter",
		Language:       "python",
		SessionName:    "test-session",
		WorkingDir:     "/workspace",
		Status:         contexts.StatusActive,
		CreatedAt:      time.Date(2025, 1, 15, 11, 30, 0, 999_999_999, cet),
		LastActivity:   time.Date(2025, 1, 15, 10, 31, 12, 0, time.UTC),
		ExecutionCount: 3,
		Restarts:       2,
	}
}

const sampleInfoJSON = `{
	"context_id": "ctx-3f2b8c1e-9a4d-4e7b-8c21-5d6f7a8b9c0d",
	"type": "jupyter",
	"language": "python",
	"session_name": "test-session",
	"working_dir": "/workspace",
	"status": "active",
	"created_at": "2025-01-15T10:30:00Z",
	"last_activity": "2025-01-15T10:31:12Z",
	"execution_count": 3,
	"restarts": 2,
	"network": false
}`

func notFound(string) (contexts.Info, error) {
	return contexts.Info{}, contexts.Errorf(contexts.CodeNotFound, "Context not found")
}

func intPtr(n int) *int { return &n }

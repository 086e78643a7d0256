package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// PoolHeader is the response header of CreateContext that says whether the
// context came from the warm pool.
const PoolHeader = "Sandboxd-Pool"

// maxErrorBody caps how much of an error response is read.
const maxErrorBody = 64 << 10

// Client talks to one sandboxd daemon. It is safe for concurrent use.
type Client struct {
	base   string
	http   *http.Client
	apiKey string
	basic  *url.Userinfo // HTTP Basic credentials, when not nil
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the Client send its requests with h.
func WithHTTPClient(h *http.Client) Option {
	return func(c *Client) { c.http = h }
}

// WithAPIKey sends key as a Bearer token, for a daemon started with
// --api-key.
func WithAPIKey(key string) Option {
	return func(c *Client) { c.apiKey = key }
}

// WithBasicAuth sends HTTP Basic credentials, for a daemon started with
// --basic-auth user:password. WithAPIKey wins when both are given.
func WithBasicAuth(user, password string) Option {
	return func(c *Client) { c.basic = url.UserPassword(user, password) }
}

// New returns a client of the daemon at baseURL, such as
// http://127.0.0.1:8080.
func New(baseURL string, opts ...Option) *Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// Every request goes to the same host; the default of 2 idle
	// connections would make parallel callers reconnect all the time.
	t.MaxIdleConnsPerHost = 64
	c := &Client{base: strings.TrimRight(baseURL, "/"), http: &http.Client{Transport: t}}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Health returns nil when the daemon serves HTTP (GET /health).
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/health", nil, nil, "health")
}

// Ready returns nil when the daemon reaches its Docker engine (GET /readyz);
// otherwise an *Error with CodeDockerUnavailable.
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/readyz", nil, nil, "readiness")
}

// Metrics returns the daemon's Prometheus metrics in the text format.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	resp, err := c.send(ctx, http.MethodGet, "/metrics", nil, "", "metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("metrics: %w", err)
	}
	return string(b), nil
}

// Languages lists the languages a context can be created for, the default
// first.
func (c *Client) Languages(ctx context.Context) ([]Language, error) {
	var out struct {
		Languages []Language `json:"languages"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/languages", nil, &out, "list languages")
	return out.Languages, err
}

// Pool returns the state of the warm pools. A server without a pool answers
// an *Error with CodeNotFound.
func (c *Client) Pool(ctx context.Context) ([]PoolStatus, error) {
	var out struct {
		Pools []PoolStatus `json:"pools"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/pool", nil, &out, "pool status")
	return out.Pools, err
}

// CreateContext creates a context and returns it once its kernel is ready.
func (c *Client) CreateContext(ctx context.Context, req CreateRequest) (*Context, error) {
	resp, err := c.send(ctx, http.MethodPost, "/api/v1/contexts", req, "", "create context")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out Context
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("create context: decode response: %w", err)
	}
	out.Pool = resp.Header.Get(PoolHeader)
	return &out, nil
}

// GetContext returns the context with id.
func (c *Client) GetContext(ctx context.Context, id string) (*Context, error) {
	var out Context
	if err := c.do(ctx, http.MethodGet, contextPath(id, ""), nil, &out, "get context"); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListContexts returns every context of the daemon.
func (c *Client) ListContexts(ctx context.Context) ([]Context, error) {
	var out struct {
		Contexts []Context `json:"contexts"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/contexts", nil, &out, "list contexts")
	return out.Contexts, err
}

// DeleteContext removes the context and its container.
func (c *Client) DeleteContext(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, contextPath(id, ""), nil, nil, "delete context")
}

// Execute runs code in the context and returns when it has finished. Code
// that raises or times out still returns a response, with Success false.
func (c *Client) Execute(ctx context.Context, id string, req ExecuteRequest) (*ExecuteResponse, error) {
	var out ExecuteResponse
	if err := c.do(ctx, http.MethodPost, contextPath(id, "/execute"), req, &out, "execute"); err != nil {
		return nil, err
	}
	return &out, nil
}

// ExecuteStream runs code like Execute, but passes each event to onEvent as
// the server sends it, the end or failure event last. onEvent runs on the
// calling goroutine and may be nil. A failure event is returned as *Error.
func (c *Client) ExecuteStream(ctx context.Context, id string, req ExecuteRequest, onEvent func(Event)) (*ExecuteResponse, error) {
	if onEvent == nil {
		onEvent = func(Event) {}
	}
	resp, err := c.send(ctx, http.MethodPost, contextPath(id, "/execute"), req, "text/event-stream", "execute")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		// A server that does not stream answers the whole outcome at once.
		var out ExecuteResponse
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return nil, fmt.Errorf("execute: decode response: %w", err)
		}
		onEvent(Event{Type: EventEnd, End: &out})
		return &out, nil
	}

	r := bufio.NewReader(resp.Body)
	for {
		name, data, err := readEvent(r)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("execute: event stream ended before its end event: %w", err)
		}
		ev, err := decodeEvent(name, data)
		if err != nil {
			return nil, fmt.Errorf("execute: %w", err)
		}
		if ev.Type == "" {
			continue // an event type of a newer server
		}
		onEvent(ev)
		switch ev.Type {
		case EventEnd:
			return ev.End, nil
		case EventFailure:
			return nil, ev.Failure
		}
	}
}

// Interrupt interrupts the code running in the context, as Ctrl-C does.
func (c *Client) Interrupt(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, contextPath(id, "/interrupt"), nil, nil, "interrupt")
}

// Restart restarts the context's kernel, losing its state, and returns the
// context once the new kernel is ready.
func (c *Client) Restart(ctx context.Context, id string) (*Context, error) {
	var out Context
	if err := c.do(ctx, http.MethodPost, contextPath(id, "/restart"), nil, &out, "restart"); err != nil {
		return nil, err
	}
	return &out, nil
}

func contextPath(id, suffix string) string {
	return "/api/v1/contexts/" + url.PathEscape(id) + suffix
}

// do sends a request and decodes a JSON answer into out, or discards the
// answer when out is nil.
func (c *Client) do(ctx context.Context, method, path string, in, out any, op string) error {
	resp, err := c.send(ctx, method, path, in, "", op)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		// Drain, so the connection can be reused.
		_, err = io.Copy(io.Discard, resp.Body)
		if err != nil {
			return fmt.Errorf("%s: read response: %w", op, err)
		}
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s: decode response: %w", op, err)
	}
	return nil
}

// send sends a request with in as its JSON body, when not nil. It returns
// the response when its status is 2xx, and an *Error otherwise.
func (c *Client) send(ctx context.Context, method, path string, in any, accept, op string) (*http.Response, error) {
	if in == nil {
		return c.sendBody(ctx, method, path, nil, "", accept, op)
	}
	b, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("%s: encode request: %w", op, err)
	}
	return c.sendBody(ctx, method, path, bytes.NewReader(b), "application/json", accept, op)
}

// sendBody is send with a body of contentType read from body, when not nil.
func (c *Client) sendBody(ctx context.Context, method, path string, body io.Reader, contentType, accept, op string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	} else if c.basic != nil {
		pass, _ := c.basic.Password()
		req.SetBasicAuth(c.basic.Username(), pass)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, fmt.Errorf("%s: %w", op, readError(resp))
	}
	return resp, nil
}

// readError makes an *Error of an error response. A body that is not an
// error body of ours becomes the message.
func readError(resp *http.Response) *Error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &Error{Status: resp.StatusCode}
	var body struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if json.Unmarshal(b, &body) == nil && body.Code != "" {
		e.Code, e.Message = body.Code, body.Error
		return e
	}
	e.Message = strings.TrimSpace(string(b))
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}

// readEvent reads one Server-Sent Event: its name and its data, the data
// lines joined by newlines. Comments (keep-alives) are skipped.
func readEvent(r *bufio.Reader) (name string, data []byte, err error) {
	var lines [][]byte
	seen := false
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return "", nil, err
		}
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if len(line) == 0 {
			if seen {
				return name, bytes.Join(lines, []byte("\n")), nil
			}
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			name, seen = string(value), true
		case "data":
			lines, seen = append(lines, value), true
		}
	}
}

// decodeEvent decodes the data of an event named name. An unknown name
// gives an Event with no Type.
func decodeEvent(name string, data []byte) (Event, error) {
	ev := Event{Type: name}
	var err error
	switch name {
	case EventStdout, EventStderr:
		var t struct {
			Text string `json:"text"`
		}
		err = json.Unmarshal(data, &t)
		ev.Text = t.Text
	case EventResult:
		ev.Result = new(Result)
		err = json.Unmarshal(data, ev.Result)
	case EventError:
		ev.Error = new(ExecutionError)
		err = json.Unmarshal(data, ev.Error)
	case EventEnd:
		ev.End = new(ExecuteResponse)
		err = json.Unmarshal(data, ev.End)
	case EventFailure:
		var body struct {
			Error string `json:"error"`
			Code  string `json:"code"`
		}
		err = json.Unmarshal(data, &body)
		ev.Failure = &Error{Code: body.Code, Message: body.Error}
	default:
		return Event{}, nil
	}
	if err != nil {
		return Event{}, fmt.Errorf("decode %s event: %w", name, err)
	}
	return ev, nil
}

package kernel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
)

// ErrClosed is returned by a Kernel that was closed.
var ErrClosed = errors.New("kernel connection closed")

// Options tune a Kernel.
type Options struct {
	// MaxOutput caps what is kept of all the output of one execution
	// together (stdout, stderr, rich results, the traceback), in bytes; 0
	// keeps everything. Past it, output is dropped and the result marked
	// truncated.
	MaxOutput int
	// InterruptGrace is how long a timed-out execution may take to stop after
	// the interrupt before the kernel is restarted.
	InterruptGrace time.Duration
	// ReadyTimeout bounds connecting and the first kernel_info exchange.
	ReadyTimeout time.Duration
	// OnRestart, when set, is called when the kernel died and the server
	// restarted it, whether or not anything was running.
	OnRestart func()
	// MaxMessage caps the size of one message from the kernel. A larger one
	// is read past and dropped, and the running execution is marked
	// truncated, so that no output can balloon the daemon's memory.
	MaxMessage int
	Log        *slog.Logger
}

func (o *Options) setDefaults() {
	if o.InterruptGrace <= 0 {
		o.InterruptGrace = 3 * time.Second
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	if o.MaxMessage <= 0 {
		o.MaxMessage = 16 << 20
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Request is code to execute.
type Request struct {
	Code    string
	Timeout time.Duration
	// Silent runs code without counting it or keeping it in the history:
	// for sandboxd's own set-up code.
	Silent bool
	// OnEvent, when set, receives output as it arrives. It is called from
	// the connection's reader, so it must return quickly and not block.
	OnEvent func(Event)
}

// handler takes the messages whose parent is one request of ours.
type handler interface{ handle(*Message) }

// Kernel is one running kernel reached through one persistent websocket.
// The websocket is redialled with the same session when it drops.
type Kernel struct {
	server  *Server
	id      string
	session string
	opts    Options

	writeMu sync.Mutex // the websocket allows one writer at a time
	dialMu  sync.Mutex // one redial at a time

	mu      sync.Mutex
	conn    *websocket.Conn
	pending map[string]handler // by request msg_id
	closed  bool
	readers sync.WaitGroup
}

// Start starts a kernel of the named kernelspec on server and connects to it.
// It returns once the kernel has answered a kernel_info_request.
func Start(ctx context.Context, server *Server, name string, opts Options) (*Kernel, error) {
	id, err := server.StartKernel(ctx, name)
	if err != nil {
		return nil, err
	}
	k, err := Attach(ctx, server, id, opts)
	if err != nil {
		// Nobody knows of the kernel but us: left running, it would hold
		// the server's memory and processes for good. ctx may have ended.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		opts.setDefaults()
		if serr := server.ShutdownKernel(sctx, id); serr != nil {
			opts.Log.Warn("could not shut down a kernel that did not start", "kernel_id", id, "error", serr)
		}
		return nil, err
	}
	return k, nil
}

// Attach connects to the running kernel id on server, as Start does to the
// kernel it starts: to take over a kernel that another client (an earlier
// run of sandboxd) started. Its state is untouched.
func Attach(ctx context.Context, server *Server, id string, opts Options) (*Kernel, error) {
	k := Connect(server, id, opts)
	if err := k.Ready(ctx); err != nil {
		k.Close()
		return nil, err
	}
	return k, nil
}

// Connect is Attach without waiting for the kernel to answer: for a kernel
// that is busy, and answers nothing until its cell ends. The websocket is
// dialled by the first request.
func Connect(server *Server, id string, opts Options) *Kernel {
	opts.setDefaults()
	return &Kernel{
		server:  server,
		id:      id,
		session: uuid.NewString(),
		opts:    opts,
		pending: map[string]handler{},
	}
}

// ID returns the kernel's id on its Jupyter server.
func (k *Kernel) ID() string { return k.id }

// Execute runs code and returns what it produced. It returns an error only
// when the request could not be sent; code that raised, ran past its
// timeout or lost its kernel gives a Result whose Error says so.
//
// On timeout, or when ctx ends first, the kernel is interrupted and Execute
// waits for the execution to stop, so the kernel is idle when Execute
// returns. A kernel that ignores the interrupt is restarted.
func (k *Kernel) Execute(ctx context.Context, r Request) (Result, error) {
	req := newRequest(k.session, "execute_request", "shell", executeRequest{
		Code:            r.Code,
		Silent:          r.Silent,
		StoreHistory:    !r.Silent,
		UserExpressions: map[string]string{},
		StopOnError:     true,
	})
	ex := newExecution(k.opts.MaxOutput)
	ex.onEvent = r.OnEvent
	if err := k.send(ctx, req, ex); err != nil {
		return Result{}, err
	}
	defer k.forget(req.Header.MsgID)

	timeout := r.Timeout
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-ex.done:
		return ex.result(), nil
	case <-timer.C:
	case <-ctx.Done():
	}

	restarted := k.stop(ex)
	res := ex.result()
	res.Error = &Error{Name: ErrTimeout, Value: fmt.Sprintf("execution exceeded the timeout of %v", timeout)}
	if ctx.Err() != nil {
		res.Error.Value = "execution cancelled: " + ctx.Err().Error()
	}
	if restarted {
		res.Restarted = true
		res.Error.Value += "; the kernel ignored the interrupt and was restarted, its state is lost"
	}
	res.Stderr += res.Error.Name + ": " + res.Error.Value + "\n"
	if r.OnEvent != nil {
		r.OnEvent(Event{Type: "error", Error: res.Error})
	}
	return res, nil
}

// Interrupt interrupts the running execution. One that was sent but has
// not started yet is waited for (until ctx ends): a signal sent before the
// kernel picks up the request would hit an idle kernel and be lost.
func (k *Kernel) Interrupt(ctx context.Context) error {
	for _, ex := range k.executions() {
		select {
		case <-ex.started:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return k.server.Interrupt(ctx, k.id)
}

// Restart restarts the kernel, losing its state, and waits until it answers
// again. What was running ends with a KernelDied error.
func (k *Kernel) Restart(ctx context.Context) error {
	if err := k.server.Restart(ctx, k.id); err != nil {
		return err
	}
	k.failPending(&Error{Name: ErrKernelDied, Value: "the kernel was restarted; its state is lost"}, true)
	return k.Ready(ctx)
}

// Ready returns once the kernel answers a kernel_info_request, as it does
// when it has started (or restarted) and is idle.
func (k *Kernel) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, k.opts.ReadyTimeout)
	defer cancel()
	return k.waitInfo(ctx)
}

// stop interrupts the kernel and waits for ex to end; when the interrupt
// does not stop it in time, the kernel is restarted. It reports whether the
// kernel was restarted.
func (k *Kernel) stop(ex *execution) (restarted bool) {
	ctx, cancel := context.WithTimeout(context.Background(), k.opts.InterruptGrace)
	defer cancel()
	err := k.Interrupt(ctx)
	if err == nil {
		select {
		case <-ex.done:
			return false
		case <-ctx.Done():
		}
	}
	k.opts.Log.Warn("kernel did not stop after interrupt; restarting it", "kernel_id", k.id, "error", err)
	rctx, rcancel := context.WithTimeout(context.Background(), k.opts.ReadyTimeout)
	defer rcancel()
	if err := k.server.Restart(rctx, k.id); err != nil {
		k.opts.Log.Error("restart kernel", "kernel_id", k.id, "error", err)
	}
	ex.fail(nil)
	if err := k.Ready(rctx); err != nil {
		k.opts.Log.Error("kernel not ready after restart", "kernel_id", k.id, "error", err)
	}
	return true
}

// send registers h for the replies to req and sends req, dialling the
// websocket first if it is down.
func (k *Kernel) send(ctx context.Context, req request, h handler) error {
	data, err := json.Marshal(req)
	if err != nil {
		return err
	}
	conn, err := k.connection(ctx)
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.pending[req.Header.MsgID] = h
	k.mu.Unlock()

	k.writeMu.Lock()
	err = conn.WriteMessage(websocket.TextMessage, data)
	k.writeMu.Unlock()
	if err != nil {
		k.forget(req.Header.MsgID)
		conn.Close()
		return fmt.Errorf("send %s: %w", req.Header.MsgType, err)
	}
	return nil
}

func (k *Kernel) forget(msgID string) {
	k.mu.Lock()
	delete(k.pending, msgID)
	k.mu.Unlock()
}

// connection returns the open websocket, dialling it when there is none.
func (k *Kernel) connection(ctx context.Context) (*websocket.Conn, error) {
	k.dialMu.Lock()
	defer k.dialMu.Unlock()
	k.mu.Lock()
	conn, closed := k.conn, k.closed
	k.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if conn != nil {
		return conn, nil
	}

	dialer := websocket.Dialer{
		NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return k.server.dial(ctx)
		},
		HandshakeTimeout: 10 * time.Second,
	}
	url := "ws://localhost/api/kernels/" + k.id + "/channels?session_id=" + k.session
	conn, resp, err := dialer.DialContext(ctx, url, http.Header{"Authorization": {"token " + k.server.token}})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("connect to kernel %s: %w", k.id, err)
	}

	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		conn.Close()
		return nil, ErrClosed
	}
	k.conn = conn
	k.readers.Add(1)
	go k.read(conn)
	return conn, nil
}

// read dispatches every message from conn until it fails. It is the only
// reader of conn.
func (k *Kernel) read(conn *websocket.Conn) {
	defer k.readers.Done()
	var buf bytes.Buffer
	for {
		typ, r, err := conn.NextReader()
		if err != nil {
			k.dropConnection(conn, err)
			return
		}
		// Binary frames carry messages with buffers (widgets, comms): not ours.
		if typ != websocket.TextMessage {
			io.Copy(io.Discard, r)
			continue
		}
		buf.Reset()
		n, err := buf.ReadFrom(io.LimitReader(r, int64(k.opts.MaxMessage)+1))
		if err == nil && n > int64(k.opts.MaxMessage) {
			n, err = io.Copy(io.Discard, r)
			k.opts.Log.Warn("dropped an oversized kernel message", "kernel_id", k.id, "bytes", n+int64(k.opts.MaxMessage)+1)
			k.dropOversized()
		}
		if err != nil {
			k.dropConnection(conn, err)
			return
		}
		if buf.Len() > k.opts.MaxMessage {
			continue
		}
		data := buf.Bytes()
		if buf.Cap() > 1<<20 && buf.Len() < 64<<10 {
			// Keep a large buffer while large messages keep coming (a burst
			// of rich output), but do not pin it for the life of the
			// connection: a small message (the idle status that ends the
			// burst) lets it go.
			buf = bytes.Buffer{}
		}
		var m Message
		if err := json.Unmarshal(data, &m); err != nil {
			k.opts.Log.Warn("undecodable kernel message", "kernel_id", k.id, "error", err)
			continue
		}
		k.dispatch(&m)
	}
}

func (k *Kernel) dispatch(m *Message) {
	parent := m.ParentHeader.MsgID
	if parent == "" {
		// The server announces a kernel that died and was restarted (or
		// could not be) with a status of its own, with no parent. No reply
		// will ever come for what was running.
		if m.Header.MsgType == "status" {
			var c statusContent
			if json.Unmarshal(m.Content, &c) == nil && (c.ExecutionState == "restarting" || c.ExecutionState == "dead") {
				k.failPending(&Error{Name: ErrKernelDied, Value: kernelDiedValue(c.ExecutionState)}, c.ExecutionState == "restarting")
				if c.ExecutionState == "restarting" && k.opts.OnRestart != nil {
					k.opts.OnRestart()
				}
			}
		}
		return
	}
	k.mu.Lock()
	h := k.pending[parent]
	k.mu.Unlock()
	if h != nil {
		h.handle(m)
	}
}

func kernelDiedValue(state string) string {
	if state == "dead" {
		return "the kernel died and could not be restarted"
	}
	return "the kernel died (it exited or ran out of memory) and was restarted; its state is lost"
}

// dropConnection forgets a broken websocket; the next request redials.
func (k *Kernel) dropConnection(conn *websocket.Conn, err error) {
	conn.Close()
	k.mu.Lock()
	if k.conn == conn {
		k.conn = nil
	}
	closed := k.closed
	k.mu.Unlock()
	if !closed {
		k.opts.Log.Warn("kernel websocket closed", "kernel_id", k.id, "error", err)
	}
	k.failPending(&Error{Name: ErrKernelDied, Value: "lost the connection to the kernel: " + err.Error()}, false)
}

func (k *Kernel) executions() []*execution {
	k.mu.Lock()
	defer k.mu.Unlock()
	var all []*execution
	for _, h := range k.pending {
		if ex, ok := h.(*execution); ok {
			all = append(all, ex)
		}
	}
	return all
}

// failPending ends every running execution with e.
func (k *Kernel) failPending(e *Error, restarted bool) {
	for _, ex := range k.executions() {
		if restarted {
			ex.failRestarted(e)
		} else {
			ex.fail(e)
		}
	}
}

// dropOversized marks the running executions truncated: a message too large
// to read was theirs. Its parent is unknown, but executions on a kernel take
// turns, so there is at most one.
func (k *Kernel) dropOversized() {
	for _, ex := range k.executions() {
		ex.dropped()
	}
}

// infoWaiter ends once a kernel_info_request has both its shell reply and
// an iopub status: only then do both channels carry messages.
type infoWaiter struct {
	mu          sync.Mutex
	reply, iopb bool
	done        chan struct{}
}

func (w *infoWaiter) handle(m *Message) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch m.Header.MsgType {
	case "kernel_info_reply":
		w.reply = true
	case "status":
		w.iopb = true
	}
	if w.reply && w.iopb {
		select {
		case <-w.done:
		default:
			close(w.done)
		}
	}
}

// infoRetry is how long waitInfo waits for an answer before it asks again:
// short, since the first answer's iopub status is often lost while the
// kernel starts, and a kernel that is busy starting queues the requests.
const infoRetry = 200 * time.Millisecond

// waitInfo sends kernel_info_request until one is answered on shell and
// iopub: a kernel that is still starting may miss the first, and after a
// restart the server subscribes to the new kernel's iopub late, so what
// the kernel publishes before then is lost (ZeroMQ's slow joiner). This is
// the "nudge" Jupyter's own clients do.
func (k *Kernel) waitInfo(ctx context.Context) error {
	for {
		req := newRequest(k.session, "kernel_info_request", "shell", struct{}{})
		w := &infoWaiter{done: make(chan struct{})}
		err := k.send(ctx, req, w)
		if err == nil {
			select {
			case <-w.done:
				k.forget(req.Header.MsgID)
				return nil
			case <-time.After(infoRetry):
			case <-ctx.Done():
			}
			k.forget(req.Header.MsgID)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("kernel %s not ready: %w (last error: %v)", k.id, ctx.Err(), err)
		}
		if err != nil {
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}
}

// Shutdown stops the kernel on its server, which goes on serving others,
// and closes the connection.
func (k *Kernel) Shutdown(ctx context.Context) error {
	err := k.server.ShutdownKernel(ctx, k.id)
	k.Close()
	return err
}

// Close closes the websocket and fails what is still running. It does not
// stop the kernel: the kernel goes with its container.
func (k *Kernel) Close() error {
	k.mu.Lock()
	k.closed = true
	conn := k.conn
	k.conn = nil
	k.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
	k.readers.Wait()
	k.failPending(&Error{Name: ErrKernelDied, Value: "the context was closed"}, false)
	k.server.Close()
	return nil
}

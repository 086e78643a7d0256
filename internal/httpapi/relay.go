package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/gorilla/websocket"

	"github.com/sandboxd/sandboxd/internal/contexts"
	"github.com/sandboxd/sandboxd/internal/kernel"
)

// Websocket timing: a client that answers no ping within pongWait is gone.
const (
	pingEvery = 30 * time.Second
	pongWait  = pingEvery + 10*time.Second
	writeWait = 10 * time.Second
)

// maxRelayQueue is how many execute_requests a websocket may have waiting
// behind the running one. More are refused with a QueueFull reply rather
// than waited for: a reader waiting for the queue would leave interrupts
// and pings on the same websocket unanswered until a whole execution ended.
// (Replies still wait for a writer that the client does not read from, at
// most writeWait, after which the connection is cut.)
const maxRelayQueue = 16

// relayUpgrader keeps gorilla's default origin check: a web page of
// another origin cannot drive a context from a user's browser.
var relayUpgrader = websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 4096}

// relayRequest is what the relay reads of a client's message.
type relayRequest struct {
	Header   kernel.Header `json:"header"`
	Channel  string        `json:"channel"`
	Metadata struct {
		Timeout *float64          `json:"timeout"` // seconds
		Env     map[string]string `json:"env"`
	} `json:"metadata"`
	Content struct {
		Code *string `json:"code"`
	} `json:"content"`
}

// timeout is an execute_request's timeout in seconds. One not more than 0
// is dropped, for the default: no field of the message is there to name in
// a refusal.
func (req *relayRequest) timeout() *float64 {
	if t := req.Metadata.Timeout; t != nil && *t > 0 {
		return t
	}
	return nil
}

// validate checks an execute_request; what it refuses is answered in the
// execute_reply.
func (req *relayRequest) validate(b bounds) error {
	if err := checkTimeout(req.timeout(), b); err != nil {
		return err
	}
	return contexts.ValidateEnv(req.Metadata.Env)
}

// handleRelay serves a context over a websocket in the JSON form of the
// Jupyter messaging protocol, as a Jupyter server's kernel channels do, so
// notebook-like clients can drive it. Executions go through the same queue,
// timeout and output cap as POST .../execute. The client going away
// interrupts what it is running.
func handleRelay(log *slog.Logger, svc contextService, maxMessage int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := chi.URLParam(r, "id")
		c, err := svc.Get(id)
		if err == nil && c.Status == contexts.StatusRecovering {
			err = contexts.ErrRecovering
		}
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		conn, err := relayUpgrader.Upgrade(w, r, nil)
		if err != nil {
			return // Upgrade has answered the client
		}
		// out holds few messages: what waits for a slow client is bounded by
		// executeStreaming's queue, in bytes, not here.
		rl := &relay{conn: conn, svc: svc, log: log, id: id, language: c.Language, out: make(chan kernel.Reply, 4)}
		rl.serve(r.Context(), maxMessage)
	}
}

// relay is one client's websocket. Its reader is serve's goroutine; one
// writer goroutine alone writes to conn; one worker runs executions in
// arrival order.
type relay struct {
	conn     *websocket.Conn
	svc      contextService
	log      *slog.Logger
	id       string
	language string
	out      chan kernel.Reply
	cancel   context.CancelFunc

	mu       sync.Mutex
	closeMsg []byte // the close frame to end with, when not a normal closure
}

func (rl *relay) serve(ctx context.Context, maxMessage int64) {
	ctx, rl.cancel = context.WithCancel(ctx)
	cancel := rl.cancel
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); defer cancel(); rl.write(ctx) }()
	work := make(chan relayRequest, maxRelayQueue)
	go func() {
		defer wg.Done()
		for req := range work {
			rl.execute(ctx, req)
		}
	}()

	rl.conn.SetReadLimit(maxMessage)
	rl.conn.SetReadDeadline(time.Now().Add(pongWait))
	rl.conn.SetPongHandler(func(string) error { return rl.conn.SetReadDeadline(time.Now().Add(pongWait)) })
	for {
		_, data, err := rl.conn.ReadMessage()
		if err != nil {
			break // the client went away
		}
		var req relayRequest
		if err := json.Unmarshal(data, &req); err != nil {
			rl.log.Warn("relay: undecodable message", "context_id", rl.id, "error", err)
			continue
		}
		switch t := req.Header.MsgType; {
		case t == "execute_request":
			select {
			case work <- req:
			default:
				rl.answer(ctx, req, "execute_reply", map[string]any{
					"status": "error", "ename": "QueueFull", "traceback": []string{},
					"evalue": fmt.Sprintf("%d executions are already waiting on this websocket; wait for their replies", maxRelayQueue),
				})
			}
		case t == "kernel_info_request":
			rl.answer(ctx, req, "kernel_info_reply", rl.kernelInfo())
		case t == "interrupt_request":
			go rl.interrupt(ctx, req)
		case strings.HasSuffix(t, "_request"):
			rl.answer(ctx, req, strings.TrimSuffix(t, "_request")+"_reply", map[string]any{
				"status": "error", "ename": "NotSupported", "evalue": t + " is not supported by sandboxd", "traceback": []string{},
			})
		}
	}
	cancel()
	close(work)
	wg.Wait()
	rl.conn.Close()
}

// write sends queued messages and pings until ctx ends or a write fails,
// then closes the connection, so that the reader stops too.
func (rl *relay) write(ctx context.Context) {
	ping := time.NewTicker(pingEvery)
	defer ping.Stop()
	defer rl.conn.Close()
	for {
		select {
		case m := <-rl.out:
			rl.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if err := rl.conn.WriteJSON(m); err != nil {
				return
			}
		case <-ping.C:
			if err := rl.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
				return
			}
		case <-ctx.Done():
			rl.mu.Lock()
			msg := rl.closeMsg
			rl.mu.Unlock()
			if msg == nil {
				msg = websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
			}
			rl.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(writeWait))
			return
		}
	}
}

func (rl *relay) send(ctx context.Context, m kernel.Reply) error {
	select {
	case rl.out <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// cutOff ends the websocket with a close frame that says why.
func (rl *relay) cutOff(err error) {
	rl.mu.Lock()
	if rl.closeMsg == nil {
		rl.closeMsg = websocket.FormatCloseMessage(websocket.ClosePolicyViolation, err.Error())
	}
	rl.mu.Unlock()
	rl.cancel()
}

func (rl *relay) status(ctx context.Context, parent kernel.Header, state string) {
	rl.send(ctx, kernel.NewReply(parent, "status", "iopub", map[string]string{"execution_state": state}))
}

// answer sends a shell reply between busy and idle, as a kernel does.
func (rl *relay) answer(ctx context.Context, req relayRequest, msgType string, content any) {
	channel := req.Channel
	if channel == "" {
		channel = "shell"
	}
	rl.status(ctx, req.Header, "busy")
	rl.send(ctx, kernel.NewReply(req.Header, msgType, channel, content))
	rl.status(ctx, req.Header, "idle")
}

func (rl *relay) kernelInfo() map[string]any {
	return map[string]any{
		"status":                 "ok",
		"protocol_version":       "5.3",
		"implementation":         "sandboxd",
		"implementation_version": "1",
		"language_info":          map[string]string{"name": rl.language},
		"banner":                 "sandboxd " + rl.language + " context",
	}
}

func (rl *relay) interrupt(ctx context.Context, req relayRequest) {
	content := map[string]any{"status": "ok"}
	if err := rl.svc.Interrupt(ctx, rl.id); err != nil {
		content = map[string]any{"status": "error", "ename": contexts.Code(err), "evalue": err.Error(), "traceback": []string{}}
	}
	rl.answer(ctx, req, "interrupt_reply", content)
}

// execute runs one execute_request and relays its output as iopub
// messages, then its execute_reply.
func (rl *relay) execute(ctx context.Context, req relayRequest) {
	parent := req.Header
	rl.status(ctx, parent, "busy")
	defer rl.status(ctx, parent, "idle")

	xreq := contexts.ExecuteRequest{Env: req.Metadata.Env, Timeout: duration(req.timeout())}
	if req.Content.Code != nil {
		xreq.Code = *req.Content.Code
	}
	var e contexts.Execution
	err := req.validate(rl.svc)
	if err == nil {
		e, err = executeStreaming(ctx, rl.svc, rl.id, xreq, func(ev kernel.Event) error {
			if m, ok := iopubMessage(parent, ev); ok {
				return rl.send(ctx, m)
			}
			return nil
		}, nil)
	}
	switch {
	case errors.Is(err, errSlowClient):
		rl.log.Warn("cut off a websocket client", "context_id", rl.id, "error", err)
		rl.cutOff(err)
		return
	case errors.Is(err, errWrite):
		return // the writer is gone, and ctx with it
	}
	reply := map[string]any{"status": e.Status, "execution_count": e.ExecutionCount, "user_expressions": map[string]any{}, "payload": []any{}}
	switch {
	case err != nil:
		reply = map[string]any{"status": "error", "ename": contexts.Code(err), "evalue": err.Error(), "traceback": []string{}}
	case e.Error != nil:
		reply["status"] = "error"
		reply["ename"], reply["evalue"], reply["traceback"] = e.Error.Name, e.Error.Value, strings.Split(e.Error.Traceback, "\n")
	case e.Status == "":
		reply["status"] = "ok"
	}
	rl.send(ctx, kernel.NewReply(parent, "execute_reply", "shell", reply))
}

// iopubMessage turns one piece of an execution's output into the iopub
// message a kernel would have sent for it.
func iopubMessage(parent kernel.Header, ev kernel.Event) (kernel.Reply, bool) {
	switch ev.Type {
	case "stdout", "stderr":
		return kernel.NewReply(parent, "stream", "iopub", map[string]string{"name": ev.Type, "text": ev.Text}), true
	case "result":
		content := map[string]any{"data": ev.Output.Data, "metadata": ev.Output.Metadata}
		if content["metadata"] == nil || len(ev.Output.Metadata) == 0 {
			content["metadata"] = map[string]any{}
		}
		return kernel.NewReply(parent, ev.Output.Type, "iopub", content), true
	case "error":
		return kernel.NewReply(parent, "error", "iopub", map[string]any{
			"ename": ev.Error.Name, "evalue": ev.Error.Value, "traceback": strings.Split(ev.Error.Traceback, "\n"),
		}), true
	}
	return kernel.Reply{}, false
}

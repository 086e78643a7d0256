package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
)

// rawKernel is the floor: the least a client can do to run code on a
// Jupyter kernel. It starts a kernel of its own on a context's Jupyter
// server and speaks protocol 5.3 over one websocket, reading synchronously
// on the calling goroutine. It shares no code with sandboxd's kernel
// package, so none of sandboxd's costs hide in it.
type rawKernel struct {
	rest    *http.Client
	token   string
	id      string
	session string
	conn    *websocket.Conn
	stop    func() bool // stops closing conn when the bench's ctx ends
}

// rawMessage is what we read of a message from the server.
type rawMessage struct {
	Header struct {
		MsgType string `json:"msg_type"`
	} `json:"header"`
	ParentHeader struct {
		MsgID string `json:"msg_id"`
	} `json:"parent_header"`
	Channel string          `json:"channel"`
	Content json.RawMessage `json:"content"`
}

// startRawKernel starts a python3 kernel on the Jupyter server dialServer
// reaches, as the daemon does, and returns once it has answered a
// kernel_info_request. The
// connection is closed when ctx ends, which ends a running execute.
func startRawKernel(ctx context.Context, dialServer func(context.Context) (net.Conn, error), token string) (*rawKernel, error) {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) { return dialServer(ctx) }
	k := &rawKernel{
		rest:    &http.Client{Transport: &http.Transport{DialContext: dial}},
		token:   token,
		session: uuid.NewString(),
	}
	var model struct {
		ID string `json:"id"`
	}
	if err := k.call(ctx, http.MethodPost, "/api/kernels", `{"name":"python3"}`, &model); err != nil {
		return nil, fmt.Errorf("start kernel: %w", err)
	}
	k.id = model.ID

	dialer := websocket.Dialer{NetDialContext: dial, HandshakeTimeout: 30 * time.Second}
	url := "ws://localhost/api/kernels/" + k.id + "/channels?session_id=" + k.session
	conn, resp, err := dialer.DialContext(ctx, url, http.Header{"Authorization": {"token " + token}})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		k.Close()
		return nil, fmt.Errorf("connect to kernel %s: %w", k.id, err)
	}
	k.conn = conn
	k.stop = context.AfterFunc(ctx, func() { conn.Close() })

	// The server holds shell messages until the kernel listens, so one
	// request is enough.
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stopWait := context.AfterFunc(wctx, func() { conn.Close() })
	defer stopWait()
	id, err := k.send("kernel_info_request", struct{}{})
	for err == nil {
		var m rawMessage
		if m, err = k.read(); err == nil && m.ParentHeader.MsgID == id && m.Header.MsgType == "kernel_info_reply" {
			return k, nil
		}
	}
	k.Close()
	if wctx.Err() != nil {
		err = wctx.Err()
	}
	return nil, fmt.Errorf("kernel_info of kernel %s: %w", k.id, err)
}

// Execute runs code and returns once both the execute_reply and the idle
// status for it have arrived, as sandboxd waits for both.
func (k *rawKernel) Execute(code string) error {
	id, err := k.send("execute_request", map[string]any{
		"code":             code,
		"silent":           false,
		"store_history":    true,
		"user_expressions": map[string]any{},
		"allow_stdin":      false,
		"stop_on_error":    true,
	})
	if err != nil {
		return err
	}
	var replied, idle bool
	for !replied || !idle {
		m, err := k.read()
		if err != nil {
			return fmt.Errorf("execute: %w", err)
		}
		if m.ParentHeader.MsgID != id {
			continue
		}
		switch {
		case m.Channel == "shell" && m.Header.MsgType == "execute_reply":
			var c struct {
				Status string `json:"status"`
			}
			if err := json.Unmarshal(m.Content, &c); err != nil || c.Status != "ok" {
				return fmt.Errorf("execute: reply status %q", c.Status)
			}
			replied = true
		case m.Channel == "iopub" && m.Header.MsgType == "status":
			var c struct {
				State string `json:"execution_state"`
			}
			if json.Unmarshal(m.Content, &c) == nil && c.State == "idle" {
				idle = true
			}
		}
	}
	return nil
}

// Close closes the websocket and shuts the kernel down.
func (k *rawKernel) Close() error {
	if k.stop != nil {
		k.stop()
	}
	if k.conn != nil {
		k.conn.Close()
	}
	var err error
	if k.id != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = k.call(ctx, http.MethodDelete, "/api/kernels/"+k.id, "", nil)
		cancel()
	}
	k.rest.CloseIdleConnections()
	return err
}

// send sends a request on the shell channel and returns its msg_id.
func (k *rawKernel) send(msgType string, content any) (string, error) {
	id := uuid.NewString()
	msg := map[string]any{
		"header": map[string]string{
			"msg_id":   id,
			"session":  k.session,
			"username": "sandboxd-bench",
			"date":     time.Now().UTC().Format(time.RFC3339Nano),
			"msg_type": msgType,
			"version":  "5.3",
		},
		"parent_header": map[string]any{},
		"metadata":      map[string]any{},
		"content":       content,
		"channel":       "shell",
		"buffers":       []any{},
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return "", err
	}
	if err := k.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		return "", fmt.Errorf("send %s: %w", msgType, err)
	}
	return id, nil
}

// read reads the next JSON message, skipping binary ones (comms with
// buffers), which are never ours.
func (k *rawKernel) read() (rawMessage, error) {
	for {
		typ, data, err := k.conn.ReadMessage()
		if err != nil {
			return rawMessage{}, err
		}
		if typ != websocket.TextMessage {
			continue
		}
		var m rawMessage
		if err := json.Unmarshal(data, &m); err != nil {
			return rawMessage{}, fmt.Errorf("decode message: %w", err)
		}
		return m, nil
	}
}

// call makes a REST call to the Jupyter server.
func (k *rawKernel) call(ctx context.Context, method, path, body string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost"+path, bytes.NewReader([]byte(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "token "+k.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := k.rest.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(msg))
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode: %w", method, path, err)
	}
	return nil
}

package main

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// heavyDisplay sends 400 MB of rich output, 1 MB at a time.
const heavyDisplay = "from IPython.display import display, HTML\nfor _ in range(400):\n    display(HTML('x' * 10**6))"

// Rich output counts against --max-output as the streams do: 400 MB of
// display_data comes back as at most 10 MiB, flagged truncated, in every
// form (blocking, SSE, websocket, MCP), and a client that stops reading is
// cut off and its code interrupted, while the daemon's memory stays flat.
func TestHeavyRichOutputIsBoundedWithFlatMemory(t *testing.T) {
	d := newProcDaemon(t)
	proc := d.start(t, "--pool", "python=0")
	id := d.create(t)
	d.execute(t, id, "1", 0)
	idle := memoryKiB(t, proc.pid, "VmRSS")
	checkPeak := func(form string) {
		t.Helper()
		peak := memoryKiB(t, proc.pid, "VmHWM")
		t.Logf("%s: daemon RSS idle %d MiB, peak so far %d MiB", form, idle>>10, peak>>10)
		if peak-idle > 100<<10 {
			t.Errorf("%s: daemon peak RSS grew by %d MiB over its idle %d MiB", form, (peak-idle)>>10, idle>>10)
		}
	}
	const maxResults = 10 // 10 MiB of 1 MB results

	t.Run("blocking", func(t *testing.T) {
		e := d.execute(t, id, heavyDisplay, 300)
		if !e.Truncated || len(e.Results) > maxResults || !strings.HasSuffix(e.Output.Stdout, "[output truncated]\n") || !e.Success {
			t.Errorf("truncated %v, %d results, stdout %q, success %v", e.Truncated, len(e.Results), e.Output.Stdout, e.Success)
		}
		checkPeak("blocking")
	})

	t.Run("SSE", func(t *testing.T) {
		events := d.stream(t, "/api/v1/contexts/"+id+"/execute", map[string]any{"code": heavyDisplay, "timeout": 300})
		results := 0
		for _, ev := range events {
			if ev.name == "result" {
				results++
			}
		}
		if len(events) == 0 || events[len(events)-1].name != "end" {
			t.Fatalf("%d events, no end", len(events))
		}
		var end executeJSON
		json.Unmarshal([]byte(events[len(events)-1].data), &end)
		if !end.Truncated || results > maxResults || len(end.Results) != results {
			t.Errorf("truncated %v, %d result events, %d results at the end", end.Truncated, results, len(end.Results))
		}
		checkPeak("SSE")
	})

	t.Run("websocket", func(t *testing.T) {
		conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(d.url, "http")+"/api/v1/contexts/"+id+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		sendExecute(t, conn, "h1", heavyDisplay, 300)
		conn.SetReadDeadline(time.Now().Add(5 * time.Minute))
		displays, stdout := 0, ""
		for {
			var m wsMessage
			if err := conn.ReadJSON(&m); err != nil {
				t.Fatal(err)
			}
			switch m.Header.MsgType {
			case "display_data":
				displays++
			case "stream":
				stdout += m.Content["text"].(string)
			}
			if m.Header.MsgType == "execute_reply" {
				break
			}
		}
		if displays > maxResults || !strings.HasSuffix(stdout, "[output truncated]\n") {
			t.Errorf("%d display_data, stdout %q", displays, stdout)
		}
		checkPeak("websocket")
	})

	t.Run("MCP", func(t *testing.T) {
		cs := connectMCP(t, &sdk.StreamableClientTransport{Endpoint: d.url + "/mcp"})
		var out struct {
			Results   []string `json:"results"`
			Truncated bool     `json:"truncated"`
			Success   bool     `json:"success"`
		}
		toolJSON(t, callTool(t, cs, "run_code", map[string]any{"context_id": id, "code": heavyDisplay, "timeout": 300}, false), &out)
		if !out.Truncated || len(out.Results) > maxResults || !out.Success {
			t.Errorf("run_code: truncated %v, %d results, success %v", out.Truncated, len(out.Results), out.Success)
		}
		checkPeak("MCP")
	})

	t.Run("client that stops reading", func(t *testing.T) {
		// A raw connection with a small receive buffer sends the request
		// and never reads; the code would print and then sleep for long.
		dialer := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		}}
		conn, err := dialer.Dial("tcp", d.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// 20 MB is past the cap and more than the sockets buffer; far more
		// would leave a backlog in the Jupyter server that outlasts the
		// interrupt's grace, and the kernel would be restarted.
		code := "from IPython.display import display, HTML\nimport time\nfor _ in range(20):\n    display(HTML('x' * 10**6))\ntime.sleep(600)"
		body, _ := json.Marshal(map[string]any{"code": code, "timeout": 900})
		fmt.Fprintf(conn, "POST /api/v1/contexts/%s/execute HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", id, d.addr, len(body), body)
		waitStatus(t, d.daemon, id, "busy")
		deadline := time.Now().Add(2 * time.Minute)
		for {
			var c contextJSON
			d.call(t, "GET", "/api/v1/contexts/"+id, nil, &c)
			if c.Status == "active" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the execution of a client that stopped reading still runs (%s)", c.Status)
			}
			time.Sleep(200 * time.Millisecond)
		}
		checkPeak("client that stops reading")
	})

	if e := d.execute(t, id, "print('still here')", 0); e.Output.Stdout != "still here\n" {
		t.Errorf("after heavy output: %+v", e)
	}
}

// wsMessage is what the tests read of a message from the relay.
type wsMessage struct {
	Header struct {
		MsgType string `json:"msg_type"`
	} `json:"header"`
	ParentHeader struct {
		MsgID string `json:"msg_id"`
	} `json:"parent_header"`
	Content map[string]any `json:"content"`
}

func sendExecute(tb testing.TB, conn *websocket.Conn, msgID, code string, timeout float64) {
	tb.Helper()
	sendWS(tb, conn, msgID, "execute_request", map[string]any{"code": code}, map[string]any{"timeout": timeout})
}

func sendWS(tb testing.TB, conn *websocket.Conn, msgID, msgType string, content, metadata map[string]any) {
	tb.Helper()
	err := conn.WriteJSON(map[string]any{
		"header":        map[string]string{"msg_id": msgID, "msg_type": msgType, "session": "s", "version": "5.3"},
		"parent_header": map[string]any{}, "metadata": metadata, "channel": "shell", "content": content,
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// A websocket with many executions waiting still answers an interrupt at
// once: executions past the relay's queue are refused with QueueFull rather
// than blocking its reader.
func TestRelayFullQueueStillInterrupts(t *testing.T) {
	d := startDaemon(t, "--pool", "python=0")
	id := d.create(t)
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(d.url, "http")+"/api/v1/contexts/"+id+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 20 {
		sendExecute(t, conn, fmt.Sprintf("x%d", i), "import time\ntime.sleep(120)", 300)
	}
	waitStatus(t, d, id, "busy")
	sendWS(t, conn, "int", "interrupt_request", map[string]any{}, map[string]any{})
	conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	full := 0
	for {
		var m wsMessage
		if err := conn.ReadJSON(&m); err != nil {
			t.Fatalf("no interrupt_reply (%d QueueFull replies): %v", full, err)
		}
		if m.Header.MsgType == "execute_reply" && m.Content["ename"] == "QueueFull" {
			full++
		}
		if m.Header.MsgType == "interrupt_reply" {
			if m.Content["status"] != "ok" {
				t.Errorf("interrupt_reply %v", m.Content)
			}
			break
		}
	}
	if full < 20-1-16 {
		t.Errorf("%d execute_requests refused with QueueFull, want at least 3", full)
	}
}

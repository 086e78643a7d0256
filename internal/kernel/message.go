// Package kernel speaks the Jupyter messaging protocol (version 5.3) to one
// kernel behind a Jupyter server: REST to start, interrupt and restart it, and
// one persistent websocket to execute code and collect what it prints.
package kernel

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// protocolVersion is the Jupyter messaging protocol version we speak.
const protocolVersion = "5.3"

// Header identifies one message. Replies and outputs point back at the
// request's header through their parent header.
type Header struct {
	MsgID    string `json:"msg_id"`
	Session  string `json:"session"`
	Username string `json:"username"`
	Date     string `json:"date"`
	MsgType  string `json:"msg_type"`
	Version  string `json:"version"`
}

// Message is one message as the Jupyter server's websocket carries it in its
// JSON form: the channel travels inside the message.
type Message struct {
	Header       Header          `json:"header"`
	ParentHeader Header          `json:"parent_header"`
	Channel      string          `json:"channel"`
	Content      json.RawMessage `json:"content"`
}

// request is a message we send. Jupyter requires every part to be present,
// so the parent header and metadata are empty objects rather than null.
type request struct {
	Header       Header     `json:"header"`
	ParentHeader struct{}   `json:"parent_header"`
	Metadata     struct{}   `json:"metadata"`
	Content      any        `json:"content"`
	Channel      string     `json:"channel"`
	Buffers      []struct{} `json:"buffers"`
}

func newRequest(session, msgType, channel string, content any) request {
	return request{
		Header: Header{
			MsgID:    uuid.NewString(),
			Session:  session,
			Username: "sandboxd",
			Date:     time.Now().UTC().Format(time.RFC3339Nano),
			MsgType:  msgType,
			Version:  protocolVersion,
		},
		Content: content,
		Channel: channel,
		Buffers: []struct{}{},
	}
}

// executeRequest is the content of an execute_request.
type executeRequest struct {
	Code            string            `json:"code"`
	Silent          bool              `json:"silent"`
	StoreHistory    bool              `json:"store_history"`
	UserExpressions map[string]string `json:"user_expressions"`
	AllowStdin      bool              `json:"allow_stdin"`
	StopOnError     bool              `json:"stop_on_error"`
}

// The contents of the messages an execution collects.
type (
	streamContent struct {
		Name string `json:"name"`
		Text string `json:"text"`
	}
	dataContent struct {
		Data           map[string]json.RawMessage `json:"data"`
		Metadata       json.RawMessage            `json:"metadata"`
		ExecutionCount *int                       `json:"execution_count"`
	}
	errorContent struct {
		Name      string   `json:"ename"`
		Value     string   `json:"evalue"`
		Traceback []string `json:"traceback"`
	}
	statusContent struct {
		ExecutionState string `json:"execution_state"`
	}
	replyContent struct {
		Status         string `json:"status"`
		ExecutionCount *int   `json:"execution_count"`
	}
)

// Reply is a message sandboxd sends to a client of its own websocket,
// answering the client's request whose header is parent.
type Reply struct {
	Header       Header   `json:"header"`
	ParentHeader Header   `json:"parent_header"`
	Metadata     struct{} `json:"metadata"`
	Content      any      `json:"content"`
	Channel      string   `json:"channel"`
}

// NewReply returns a message of msgType on channel answering parent.
func NewReply(parent Header, msgType, channel string, content any) Reply {
	return Reply{
		Header: Header{
			MsgID:    uuid.NewString(),
			Session:  parent.Session,
			Username: "sandboxd",
			Date:     time.Now().UTC().Format(time.RFC3339Nano),
			MsgType:  msgType,
			Version:  protocolVersion,
		},
		ParentHeader: parent,
		Content:      content,
		Channel:      channel,
	}
}

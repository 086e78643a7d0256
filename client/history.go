package client

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// HistoryEntry is one execution or command in a context's history.
type HistoryEntry struct {
	ID        int64           `json:"id"`
	Kind      string          `json:"kind"` // execution or command
	StartedAt time.Time       `json:"started_at"`
	Duration  float64         `json:"duration"` // seconds
	Code      string          `json:"code,omitempty"`
	Command   string          `json:"command,omitempty"`
	Success   bool            `json:"success"`
	Output    Output          `json:"output"`
	Results   []Result        `json:"results"`
	Error     *ExecutionError `json:"error"`
	ExitCode  *int            `json:"exit_code,omitempty"` // commands only
	Truncated bool            `json:"truncated"`
}

// HistoryPage is one page of a context's history.
type HistoryPage struct {
	Entries []HistoryEntry `json:"entries"` // ascending by id
	// NextBefore is the before of the page of older entries; nil when none.
	NextBefore *int64 `json:"next_before"`
	Dropped    int64  `json:"dropped"`
}

// History returns a page of the context's history: at most limit entries
// (0 for the server's default) with ids below before (0 for the newest).
func (c *Client) History(ctx context.Context, id string, before int64, limit int) (*HistoryPage, error) {
	q := url.Values{}
	if before > 0 {
		q.Set("before", strconv.FormatInt(before, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := contextPath(id, "/history")
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out HistoryPage
	if err := c.do(ctx, http.MethodGet, path, nil, &out, "history"); err != nil {
		return nil, err
	}
	return &out, nil
}

// LiveEvent is one event of GET /api/v1/events: Type is context.created,
// context.deleted, execution.started or execution.finished, and Data its
// JSON, which always holds context_id.
type LiveEvent struct {
	Type      string
	ContextID string
	Data      json.RawMessage
}

// Events subscribes to the events of every context. The channel closes
// when ctx ends or the stream does: the server cuts off a client that does
// not keep up, so read it promptly.
func (c *Client) Events(ctx context.Context) (<-chan LiveEvent, error) {
	resp, err := c.send(ctx, http.MethodGet, "/api/v1/events", nil, "text/event-stream", "events")
	if err != nil {
		return nil, err
	}
	ch := make(chan LiveEvent)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		r := bufio.NewReader(resp.Body)
		for {
			name, data, err := readEvent(r)
			if err != nil {
				return
			}
			ev := LiveEvent{Type: name, Data: data}
			var head struct {
				ContextID string `json:"context_id"`
			}
			json.Unmarshal(data, &head) // Data keeps it all anyway
			ev.ContextID = head.ContextID
			select {
			case ch <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

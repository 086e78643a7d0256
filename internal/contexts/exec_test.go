package contexts

import (
	"bytes"
	"testing"
)

func TestHeadWriter(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		head   string
		seen   bool
		rest   string
		fails  bool
	}{
		{name: "one write", writes: []string{"123\x00data"}, head: "123", seen: true, rest: "data"},
		{name: "head split", writes: []string{"1", "23", "\x00", "da", "ta\x00x"}, head: "123", seen: true, rest: "data\x00x"},
		{name: "empty head", writes: []string{"\x00data"}, head: "", seen: true, rest: "data"},
		{name: "no NUL yet", writes: []string{"12"}, head: "12"},
		{name: "head at the limit", writes: []string{"1234", "\x00"}, head: "1234", seen: true},
		{name: "head too long", writes: []string{"123", "45"}, fails: true},
		{name: "head too long with NUL", writes: []string{"12345\x00"}, fails: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rest bytes.Buffer
			var called []string
			h := &HeadWriter{W: &rest, Max: 4, OnHead: func(b []byte) { called = append(called, string(b)) }}
			var err error
			for _, w := range tt.writes {
				var n int
				if n, err = h.Write([]byte(w)); err != nil {
					break
				}
				if n != len(w) {
					t.Fatalf("wrote %d of %q", n, w)
				}
			}
			if (err != nil) != tt.fails {
				t.Fatalf("error %v, want failure %v", err, tt.fails)
			}
			if tt.fails {
				return
			}
			head, seen := h.Head()
			if string(head) != tt.head || seen != tt.seen || rest.String() != tt.rest {
				t.Errorf("head %q seen %v rest %q, want %q %v %q", head, seen, rest.String(), tt.head, tt.seen, tt.rest)
			}
			if tt.seen != (len(called) == 1) || tt.seen && called[0] != tt.head {
				t.Errorf("OnHead called with %q", called)
			}
		})
	}
}

package kubernetes

import (
	"strings"
	"testing"
)

func TestParseMemory(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"1000\nanon 600\nfile 400\ninactive_file 300\nactive_file 100\n", 700, true},
		{"1000\nanon 1000\n", 1000, true},
		{"1000\ncache 500\ninactive_file 100\ntotal_cache 500\ntotal_inactive_file 200\n", 900, true},
		{"1000\ninactive_file 2000\n", 1000, true},
		{"max\n", 0, false},
		{"", 0, false},
		{"1000\ninactive_file x\n", 0, false},
	} {
		got, err := parseMemory(strings.NewReader(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseMemory(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

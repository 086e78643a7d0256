package contexts

import (
	"slices"
	"testing"
	"time"
)

// A context is idle once it has gone without activity for longer than
// the TTL, unless its code is running.
func TestIdle(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	ttl := 10 * time.Minute
	all := []Info{
		{ID: "old", Status: StatusActive, LastActivity: now.Add(-11 * time.Minute)},
		{ID: "old-busy", Status: StatusBusy, LastActivity: now.Add(-time.Hour)},
		{ID: "recent", Status: StatusActive, LastActivity: now.Add(-9 * time.Minute)},
		{ID: "at-ttl", Status: StatusActive, LastActivity: now.Add(-ttl)},
		{ID: "old-dead", Status: StatusDead, LastActivity: now.Add(-11 * time.Minute)},
		{ID: "old-restarting", Status: StatusRestarting, LastActivity: now.Add(-11 * time.Minute)},
	}
	var ids []string
	for _, c := range idle(all, ttl, now) {
		ids = append(ids, c.ID)
	}
	if want := []string{"old", "old-dead", "old-restarting"}; !slices.Equal(ids, want) {
		t.Errorf("idle: %v, want %v", ids, want)
	}
}

package contexts

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Record is what a context's instance cannot tell of it, kept so that a
// later run of the daemon can take the instance over: its labels are fixed
// before a pooled kernel becomes a context.
type Record struct {
	ID          string            `json:"id"`
	Language    string            `json:"language"`
	SessionName string            `json:"session_name"`
	WorkingDir  string            `json:"working_dir"`
	Env         map[string]string `json:"env,omitempty"`
	Network     bool              `json:"network,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
	Token       string            `json:"token"`
	// KernelID, of a context in a sandbox, tells its kernel from the
	// others on the sandbox's server.
	KernelID string `json:"kernel_id,omitempty"`

	// A sandbox's record has Sandbox set, its template as Language, and
	// the records of its contexts, which have none of their own.
	Sandbox     bool              `json:"sandbox,omitempty"`
	IdleTimeout time.Duration     `json:"idle_timeout,omitempty"`
	Defaults    map[string]string `json:"defaults,omitempty"`
	Contexts    []Record          `json:"contexts,omitempty"`
}

// Store keeps the records of contexts and sandboxes, and the contexts'
// histories, across runs of
// the daemon. It is only read by the daemon: a record holds its context's
// token.
type Store interface {
	Save(r Record) error
	// Load fails with an error matching os.ErrNotExist when there is no
	// record of id.
	Load(id string) (Record, error)
	// Drop removes all that is kept of id.
	Drop(id string)
	// Prune removes all that is kept of the contexts keep says no to.
	Prune(keep func(id string) bool)
	// HistoryFile is the file the history of id is logged to, on the
	// daemon's disk; "" keeps it in memory only.
	HistoryFile(id string) string
}

// DirStore is a Store of files in a directory only the daemon reads.
type DirStore string

func (d DirStore) recordFile(id string) string { return filepath.Join(string(d), id+".json") }

// HistoryFile implements Store.
func (d DirStore) HistoryFile(id string) string {
	return filepath.Join(string(d), id+".history.jsonl")
}

// Save writes r whole or not at all.
func (d DirStore) Save(r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp := d.recordFile(r.ID) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save context record: %w", err)
	}
	return os.Rename(tmp, d.recordFile(r.ID))
}

// Load implements Store.
func (d DirStore) Load(id string) (Record, error) {
	var r Record
	b, err := os.ReadFile(d.recordFile(id))
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

// Drop implements Store.
func (d DirStore) Drop(id string) {
	os.Remove(d.recordFile(id))
	os.Remove(d.HistoryFile(id))
	os.Remove(d.HistoryFile(id) + ".tmp")
}

// Prune implements Store.
func (d DirStore) Prune(keep func(id string) bool) {
	files, _ := filepath.Glob(filepath.Join(string(d), "ctx-*.*"))
	sandboxes, _ := filepath.Glob(filepath.Join(string(d), "sbx-*.*"))
	for _, f := range append(files, sandboxes...) {
		if id, _, _ := strings.Cut(filepath.Base(f), "."); !keep(id) {
			os.Remove(f)
		}
	}
}

// memoryStore keeps nothing: for a runtime without a Store, contexts do
// not outlive the daemon.
type memoryStore struct{}

func (memoryStore) Save(Record) error { return nil }
func (memoryStore) Load(string) (Record, error) {
	return Record{}, fmt.Errorf("no record kept: %w", os.ErrNotExist)
}
func (memoryStore) Drop(string)                {}
func (memoryStore) Prune(func(id string) bool) {}
func (memoryStore) HistoryFile(string) string  { return "" }

var (
	_ Store = DirStore("")
	_ Store = memoryStore{}
)

package contexts

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sandboxd/sandboxd/internal/bound"
	"github.com/sandboxd/sandboxd/internal/kernel"
)

// The kinds of history entries.
const (
	KindExecution = "execution"
	KindCommand   = "command"
)

// Entry is one execution or command in a context's history, recorded when
// it finished.
type Entry struct {
	ID        int64           `json:"id"` // per context, from 1
	Kind      string          `json:"kind"`
	StartedAt time.Time       `json:"started_at"`
	Duration  time.Duration   `json:"duration"`
	Code      string          `json:"code,omitempty"`    // KindExecution
	Command   string          `json:"command,omitempty"` // KindCommand
	Success   bool            `json:"success"`
	Stdout    string          `json:"stdout"`
	Stderr    string          `json:"stderr"`
	Outputs   []kernel.Output `json:"outputs,omitempty"`
	Error     *kernel.Error   `json:"error,omitempty"`
	ExitCode  int             `json:"exit_code"` // KindCommand
	// Truncated is true when the execution's own output was cut, or when
	// the history cut it to fit its bound.
	Truncated bool `json:"truncated"`
}

// size is about the bytes e holds: its texts and results.
func (e *Entry) size() int {
	n := len(e.Code) + len(e.Command) + len(e.Stdout) + len(e.Stderr)
	for i := range e.Outputs {
		n += e.Outputs[i].Size()
	}
	if e.Error != nil {
		n += len(e.Error.Name) + len(e.Error.Value) + len(e.Error.Traceback)
	}
	return n
}

// fit cuts e down to at most limit bytes: the largest results go first,
// then the texts lose their tails. What is cut is copied, so that the
// larger original can be freed.
func (e *Entry) fit(limit int) {
	over := e.size() - limit
	if over <= 0 {
		return
	}
	e.Truncated = true
	if len(e.Outputs) > 0 {
		bySize := make([]int, len(e.Outputs))
		for i := range bySize {
			bySize[i] = i
		}
		slices.SortFunc(bySize, func(a, b int) int { return e.Outputs[b].Size() - e.Outputs[a].Size() })
		drop := map[int]bool{}
		for _, i := range bySize {
			if over <= 0 {
				break
			}
			drop[i] = true
			over -= e.Outputs[i].Size()
		}
		var kept []kernel.Output
		for i, o := range e.Outputs {
			if !drop[i] {
				kept = append(kept, o)
			}
		}
		e.Outputs = kept
	}
	texts := []*string{&e.Stdout, &e.Stderr}
	if e.Error != nil {
		err := *e.Error
		e.Error = &err
		texts = append(texts, &err.Traceback, &err.Value)
	}
	texts = append(texts, &e.Code, &e.Command)
	for _, s := range texts {
		if over <= 0 {
			break
		}
		kept := bound.Prefix(*s, len(*s)-over)
		over -= len(*s) - len(kept)
		*s = strings.Clone(kept)
	}
}

// history is a context's bounded history: at most maxEntries entries of
// at most maxBytes together, the oldest dropped first. When file is set,
// every entry is appended to it too, and the file is rewritten with only
// the kept entries when it grows past twice maxBytes, so it stays bounded.
type history struct {
	maxEntries, maxBytes int
	file                 string

	mu        sync.Mutex
	entries   []Entry
	bytes     int
	next      int64 // the id of the next entry
	fileBytes int64 // what file holds
	compacted int64 // what it held after its last rewrite
}

func newHistory(maxEntries, maxBytes int, file string) *history {
	return &history{maxEntries: maxEntries, maxBytes: maxBytes, file: file, next: 1}
}

// add records e, giving it its id, and returns it as kept.
func (h *history) add(e Entry) Entry {
	h.mu.Lock()
	defer h.mu.Unlock()
	e.ID = h.next
	e = h.keep(e)
	if h.file != "" {
		if err := h.persist(e); err != nil {
			// The history in memory stays right; only a restart loses it.
			h.file = ""
		}
	}
	return e
}

// entryShare is the part of the bytes bound one entry may take: a huge
// output is cut to leave room for the entries around it.
const entryShare = 4

// keep adds e to the entries in memory and drops the oldest past the bounds.
func (h *history) keep(e Entry) Entry {
	e.fit(h.maxBytes / entryShare)
	h.next = e.ID + 1
	if h.maxEntries <= 0 {
		return e
	}
	h.entries = append(h.entries, e)
	h.bytes += e.size()
	drop := 0
	for len(h.entries)-drop > h.maxEntries || h.bytes > h.maxBytes {
		h.bytes -= h.entries[drop].size()
		drop++
	}
	if drop > 0 {
		// A fresh array, so that the dropped entries can be freed.
		h.entries = slices.Clone(h.entries[drop:])
	}
	return e
}

// persist appends e to the file, and rewrites the file when it has grown.
// The caller holds h.mu.
func (h *history) persist(e Entry) error {
	if h.fileBytes > 2*int64(h.maxBytes) && h.fileBytes > 2*h.compacted {
		return h.compact()
	}
	f, err := os.OpenFile(h.file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(e)
	n, err := f.Write(append(b, '\n'))
	h.fileBytes += int64(n)
	return errors.Join(err, f.Close())
}

// compact rewrites the file with the entries kept, whole or not at all.
func (h *history) compact() error {
	tmp := h.file + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_TRUNC|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w) // one value a line
	for _, e := range h.entries {
		if err = enc.Encode(e); err != nil {
			break
		}
	}
	if err == nil {
		err = w.Flush()
	}
	var size int64
	if fi, serr := f.Stat(); serr == nil {
		size = fi.Size()
	}
	if err = errors.Join(err, f.Close()); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, h.file); err != nil {
		return err
	}
	h.fileBytes, h.compacted = size, size
	return nil
}

// load reads the entries the file holds, keeping them within the bounds.
// A line cut short (the daemon stopped while writing it) ends the reading.
func (h *history) load() error {
	if h.file == "" {
		return nil
	}
	f, err := os.Open(h.file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	dec := json.NewDecoder(bufio.NewReader(f))
	for {
		var e Entry
		if err := dec.Decode(&e); err != nil {
			if err == io.EOF {
				break
			}
			// Write what was read afresh, so that what comes next is not
			// appended after a broken line.
			return errors.Join(fmt.Errorf("read history: %w", err), h.compact())
		}
		if e.ID >= h.next {
			h.keep(e)
		}
	}
	h.fileBytes = dec.InputOffset()
	return nil
}

// HistoryPage is one page of a context's history.
type HistoryPage struct {
	Entries []Entry // ascending by id
	// NextBefore is the before of the page of older entries; 0 when none.
	NextBefore int64
	// Dropped counts the entries dropped by the bounds since the context
	// began.
	Dropped int64
}

// page returns at most limit entries with ids below before (0 is no
// bound), the newest of them.
func (h *history) page(before int64, limit int) HistoryPage {
	h.mu.Lock()
	defer h.mu.Unlock()
	end := len(h.entries)
	if before > 0 {
		end, _ = slices.BinarySearchFunc(h.entries, before, func(e Entry, id int64) int { return int(e.ID - id) })
	}
	start := max(end-limit, 0)
	p := HistoryPage{Entries: slices.Clone(h.entries[start:end]), Dropped: h.next - 1 - int64(len(h.entries))}
	if start > 0 {
		p.NextBefore = h.entries[start].ID
	}
	return p
}

func (m *Manager) newHistory(id string) *history {
	return newHistory(m.cfg.HistoryEntries, m.cfg.HistoryBytes, m.store.HistoryFile(id))
}

// MaxHistoryPage is the most entries one page of history holds.
const MaxHistoryPage = 500

// History returns a page of the history of the context with id: at most
// limit entries with ids below before (0 for the newest). Errors:
// CodeNotFound, CodeContextRecovering, CodeInvalid.
func (m *Manager) History(id string, before int64, limit int) (HistoryPage, error) {
	if limit < 1 || limit > MaxHistoryPage || before < 0 {
		return HistoryPage{}, Errorf(CodeInvalid, "limit must be from 1 to %d, before a positive entry id", MaxHistoryPage)
	}
	s, err := m.get(id)
	if err != nil {
		return HistoryPage{}, err
	}
	if s.snapshot().Status == StatusRecovering {
		return HistoryPage{}, ErrRecovering
	}
	return s.hist.page(before, limit), nil
}

// record adds e to s's history and tells the subscribers.
func (m *Manager) record(s *liveContext, e Entry) {
	e = s.hist.add(e)
	m.events.publish(Event{Type: EventExecutionFinished, ContextID: s.info.ID, Entry: &e})
}

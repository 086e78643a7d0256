package contexts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sandboxd/sandboxd/internal/kernel"
)

// record is what the daemon keeps on disk of a context, so that a later run
// can take its container over: what the container's labels cannot hold,
// since they are fixed before a pooled kernel becomes a context.
type record struct {
	ID          string            `json:"id"`
	Language    string            `json:"language"`
	SessionName string            `json:"session_name"`
	WorkingDir  string            `json:"working_dir"`
	Env         map[string]string `json:"env,omitempty"`
	Network     bool              `json:"network,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
	Token       string            `json:"token"`
}

// recordPath is where the record of context id lives: in StateDir, which
// only the daemon reads (the token is in it).
func (m *Manager) recordPath(id string) string {
	return filepath.Join(m.cfg.StateDir, id+".json")
}

// saveRecord writes s's record, whole or not at all.
func (m *Manager) saveRecord(s *sandbox) error {
	if m.cfg.StateDir == "" {
		return nil
	}
	b, err := json.Marshal(record{
		ID: s.info.ID, Language: s.info.Language, SessionName: s.info.SessionName, WorkingDir: s.info.WorkingDir,
		Env: s.env, Network: s.info.Network, CreatedAt: s.info.CreatedAt, Token: s.token,
	})
	if err != nil {
		return err
	}
	tmp := m.recordPath(s.info.ID) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save context record: %w", err)
	}
	return os.Rename(tmp, m.recordPath(s.info.ID))
}

func (m *Manager) loadRecord(id string) (record, error) {
	var r record
	b, err := os.ReadFile(m.recordPath(id))
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

func (m *Manager) dropRecord(id string) {
	if m.cfg.StateDir != "" {
		os.Remove(m.recordPath(id))
	}
}

// Recover takes over the contexts a previous run of this daemon left
// running, with their kernels and variables, and removes every other
// container it left: pooled kernels, stopped containers, and those whose
// record is gone. Records without a container are dropped.
func (m *Manager) Recover(ctx context.Context) error {
	insts, err := m.rt.List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	seen := map[string]bool{}
	for _, inst := range insts {
		seen[inst.ContextID] = true
		if err := m.adopt(ctx, inst); err != nil {
			m.log.Info("removing a container left by a previous run", "context_id", inst.ContextID, "container_id", inst.ContainerID, "reason", err)
			m.dropRecord(inst.ContextID)
			errs = append(errs, m.rt.Remove(ctx, inst))
		}
	}
	if m.cfg.StateDir != "" {
		files, _ := filepath.Glob(filepath.Join(m.cfg.StateDir, "ctx-*.json"))
		for _, f := range files {
			if id := filepath.Base(f[:len(f)-len(".json")]); !seen[id] {
				os.Remove(f)
			}
		}
	}
	return errors.Join(errs...)
}

// adopt makes inst's context live again, or says why it cannot.
func (m *Manager) adopt(ctx context.Context, inst Instance) error {
	if !inst.Running {
		return errors.New("not running")
	}
	rec, err := m.loadRecord(inst.ContextID)
	if err != nil {
		return fmt.Errorf("no record: %w", err)
	}
	lang, ok := m.language(rec.Language)
	if !ok || rec.Language == "" {
		return fmt.Errorf("language %q is not served", rec.Language)
	}
	if err := m.rt.Seal(inst); err != nil {
		return err
	}
	if rec.Network {
		// The proxy is the daemon's: the one the previous run served is gone.
		if _, err := m.rt.OpenEgress(ctx, inst); err != nil {
			return fmt.Errorf("egress: %w", err)
		}
	}
	server := kernel.NewServer(inst.Socket, rec.Token)
	ids, err := server.Kernels(ctx)
	if err == nil && len(ids) != 1 {
		err = fmt.Errorf("%d kernels on its server, want 1", len(ids))
	}
	if err != nil {
		server.Close()
		return err
	}
	now := time.Now().UTC().Truncate(time.Second)
	s := &sandbox{
		info:         Info{ID: rec.ID, Type: "jupyter", Language: lang.Name, SessionName: rec.SessionName, WorkingDir: rec.WorkingDir, CreatedAt: rec.CreatedAt, Network: rec.Network},
		lang:         lang,
		env:          rec.Env,
		token:        rec.Token,
		inst:         inst,
		turn:         make(chan struct{}, 1),
		stopped:      make(chan struct{}),
		status:       StatusActive,
		lastActivity: now,
		booted:       time.Now(),
	}
	s.kernel, err = kernel.Attach(ctx, server, ids[0], m.kernelOptions(s))
	if err != nil {
		server.Close()
		return err
	}
	m.watch(s)
	m.mu.Lock()
	m.contexts[s.info.ID] = s
	m.reserved++
	m.mu.Unlock()
	m.metrics.active.Inc()
	m.log.Info("context taken over from a previous run", "context_id", s.info.ID, "container_id", inst.ContainerID)
	return nil
}

// Detach lets go of every context without removing it, for a daemon that
// stops so that its next run takes them over; pooled kernels are removed.
func (m *Manager) Detach() {
	for _, p := range m.pools {
		p.close()
	}
	m.mu.Lock()
	all := m.contexts
	m.contexts = map[string]*sandbox{}
	m.mu.Unlock()
	m.stopWatch()
	for _, s := range all {
		s.mu.Lock()
		s.removed = true
		s.mu.Unlock()
		s.kernel.Close()
	}
	m.watchers.Wait()
}

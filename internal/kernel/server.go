package kernel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"
)

// DialFunc opens a connection to a Jupyter server, however the server is
// reached: a unix socket, a TCP address, a stream a runtime carries.
type DialFunc func(ctx context.Context) (net.Conn, error)

// UnixSocket returns a DialFunc for a server listening on the unix socket
// at path.
func UnixSocket(path string) DialFunc {
	return func(ctx context.Context) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}
}

// Server is the REST side of one Jupyter server.
type Server struct {
	dial  DialFunc
	token string
	http  *http.Client
}

// NewServer returns a client for the Jupyter server that dial reaches,
// authenticated with token.
func NewServer(dial DialFunc, token string) *Server {
	return &Server{
		dial:  dial,
		token: token,
		http: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dial(ctx)
			},
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     time.Minute,
		}},
	}
}

// Close releases idle connections.
func (s *Server) Close() { s.http.CloseIdleConnections() }

// WaitReady polls the server until it answers or ctx ends. stopped, when it
// becomes readable, means the server can never come up (its container
// exited); WaitReady returns at once then.
func (s *Server) WaitReady(ctx context.Context, stopped <-chan struct{}) error {
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		last = s.do(pctx, http.MethodGet, "/api/status", nil, nil)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("jupyter server not ready: %w (last error: %v)", ctx.Err(), last)
		case <-stopped:
			return errors.New("jupyter server stopped before it was ready")
		case <-tick.C:
		}
	}
}

// StartKernel starts a kernel of the named kernelspec and returns its id.
func (s *Server) StartKernel(ctx context.Context, name string) (string, error) {
	var model struct {
		ID string `json:"id"`
	}
	body := map[string]string{"name": name}
	if err := s.do(ctx, http.MethodPost, "/api/kernels", body, &model); err != nil {
		return "", fmt.Errorf("start kernel: %w", err)
	}
	return model.ID, nil
}

// KernelModel is what the server tells of one of its kernels.
type KernelModel struct {
	ID string `json:"id"`
	// ExecutionState is the kernel's last iopub status as the server saw
	// it: idle, busy, starting...
	ExecutionState string `json:"execution_state"`
}

// Kernels returns the kernels running on the server.
func (s *Server) Kernels(ctx context.Context) ([]KernelModel, error) {
	var models []KernelModel
	if err := s.do(ctx, http.MethodGet, "/api/kernels", nil, &models); err != nil {
		return nil, fmt.Errorf("list kernels: %w", err)
	}
	return models, nil
}

// KernelSpecs returns the names of the kernelspecs the server can start.
func (s *Server) KernelSpecs(ctx context.Context) ([]string, error) {
	var specs struct {
		Kernelspecs map[string]json.RawMessage `json:"kernelspecs"`
	}
	if err := s.do(ctx, http.MethodGet, "/api/kernelspecs", nil, &specs); err != nil {
		return nil, fmt.Errorf("list kernelspecs: %w", err)
	}
	names := make([]string, 0, len(specs.Kernelspecs))
	for name := range specs.Kernelspecs {
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}

// ShutdownKernel stops the kernel and forgets it; the server goes on.
func (s *Server) ShutdownKernel(ctx context.Context, kernelID string) error {
	if err := s.do(ctx, http.MethodDelete, "/api/kernels/"+kernelID, nil, nil); err != nil {
		return fmt.Errorf("shut down kernel: %w", err)
	}
	return nil
}

// Interrupt sends the kernel an interrupt (SIGINT). It hits whatever the
// kernel is running at that moment.
func (s *Server) Interrupt(ctx context.Context, kernelID string) error {
	if err := s.do(ctx, http.MethodPost, "/api/kernels/"+kernelID+"/interrupt", nil, nil); err != nil {
		return fmt.Errorf("interrupt kernel: %w", err)
	}
	return nil
}

// Restart restarts the kernel: its state is lost, its id stays.
func (s *Server) Restart(ctx context.Context, kernelID string) error {
	if err := s.do(ctx, http.MethodPost, "/api/kernels/"+kernelID+"/restart", nil, nil); err != nil {
		return fmt.Errorf("restart kernel: %w", err)
	}
	return nil
}

func (s *Server) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "token "+s.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(msg)))
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

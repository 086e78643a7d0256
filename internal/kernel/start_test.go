package kernel

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// A kernel that the server started but that never answers is shut down
// when Start gives up on it, though Start's ctx has ended: nobody else
// knows of it.
func TestStartShutsDownAKernelThatFails(t *testing.T) {
	var mu sync.Mutex
	var deleted []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/api/kernels":
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(`{"id":"k1","name":"python3"}`))
		case r.Method == http.MethodDelete:
			mu.Lock()
			deleted = append(deleted, r.URL.Path)
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		default: // its channels: the kernel never answers
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	server := NewServer(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", srv.Listener.Addr().String())
	}, "token")
	defer server.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if k, err := Start(ctx, server, "python3", Options{}); err == nil {
		k.Close()
		t.Fatal("Start of a kernel that never answers succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(deleted) != 1 || deleted[0] != "/api/kernels/k1" {
		t.Errorf("deleted %v, want the kernel k1", deleted)
	}
}

package client

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestBasicAuth(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("Authorization"))
	}))
	defer srv.Close()
	tests := []struct {
		name string
		opts []Option
		want string
	}{
		{"basic", []Option{WithBasicAuth("u", "p:w")}, "Basic dTpwOnc="},
		{"key wins", []Option{WithBasicAuth("u", "p"), WithAPIKey("k1")}, "Bearer k1"},
		{"none", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := New(srv.URL, tt.opts...).Metrics(t.Context())
			if err != nil || got != tt.want {
				t.Errorf("Authorization = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

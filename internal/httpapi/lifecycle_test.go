package httpapi

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"testing"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

func TestInterruptAndRestart(t *testing.T) {
	const otherID = "Ctx-Other_1.2~3"
	notFoundBody := errBody("Context not found", contexts.CodeNotFound)
	tests := []struct {
		name      string
		action    string // interrupt or restart
		id        string
		interrupt func(context.Context, string) error
		restart   func(context.Context, string) (contexts.Info, error)
		want      want
	}{
		{
			name:      "interrupt",
			action:    "interrupt",
			id:        ctxID,
			interrupt: func(context.Context, string) error { return nil },
			want:      want{status: http.StatusNoContent, noBody: true},
		},
		{
			name:   "interrupt unknown context",
			action: "interrupt",
			id:     otherID,
			interrupt: func(context.Context, string) error {
				return contexts.Errorf(contexts.CodeNotFound, "Context not found")
			},
			want: want{status: http.StatusNotFound, contentType: ctJSON, errObj: notFoundBody},
		},
		{
			name:   "interrupt with the kernel unreachable",
			action: "interrupt",
			id:     ctxID,
			interrupt: func(context.Context, string) error {
				return &contexts.Error{Code: contexts.CodeKernelUnavailable, Message: "could not interrupt the kernel", Err: errors.New("secret cause")}
			},
			want: want{status: http.StatusServiceUnavailable, contentType: ctJSON,
				errObj: errBody("could not interrupt the kernel", contexts.CodeKernelUnavailable), notContains: []string{"secret cause"}},
		},
		{
			name:    "restart",
			action:  "restart",
			id:      ctxID,
			restart: func(context.Context, string) (contexts.Info, error) { return sampleInfo(), nil },
			want:    want{status: http.StatusOK, contentType: ctJSON, json: sampleInfoJSON},
		},
		{
			name:    "restart unknown context",
			action:  "restart",
			id:      otherID,
			restart: func(context.Context, string) (contexts.Info, error) { return notFound("") },
			want:    want{status: http.StatusNotFound, contentType: ctJSON, errObj: notFoundBody},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, &fakeService{interrupt: tt.interrupt, restart: tt.restart})
			got := s.do(t, request{method: http.MethodPost, path: "/api/v1/contexts/" + tt.id + "/" + tt.action})
			checkResponse(t, got, tt.want)

			var wantInterrupts, wantRestarts []string
			if tt.action == "interrupt" {
				wantInterrupts = []string{tt.id}
			} else {
				wantRestarts = []string{tt.id}
			}
			if !reflect.DeepEqual(s.fake.interrupts, wantInterrupts) {
				t.Errorf("Interrupt calls = %q, want %q", s.fake.interrupts, wantInterrupts)
			}
			if !reflect.DeepEqual(s.fake.restarts, wantRestarts) {
				t.Errorf("Restart calls = %q, want %q", s.fake.restarts, wantRestarts)
			}
		})
	}
}

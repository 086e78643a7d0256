package main

import (
	"io"
	"testing"
)

func TestWorkspaceSizeFlag(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  string
		want workspaceSize
		bad  bool
	}{
		{want: -1},
		{args: []string{"--workspace-size", "auto"}, want: -1},
		{args: []string{"--workspace-size", "0"}, want: 0},
		{args: []string{"--workspace-size", "64m"}, want: 64 << 20},
		{env: "2g", want: 2 << 30},
		{args: []string{"--workspace-size", "-5m"}, bad: true},
		{args: []string{"--workspace-size", "lots"}, bad: true},
	} {
		getenv := func(k string) string {
			if k == "SANDBOXD_WORKSPACE_SIZE" {
				return tt.env
			}
			return ""
		}
		c, err := parseConfig(tt.args, getenv, io.Discard)
		switch {
		case tt.bad && err == nil:
			t.Errorf("%v %q: no error, size %v", tt.args, tt.env, c.WorkspaceSize)
		case !tt.bad && (err != nil || c.WorkspaceSize != tt.want):
			t.Errorf("%v %q: %v %v, want %v", tt.args, tt.env, c.WorkspaceSize, err, tt.want)
		}
	}
}

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

func TestNetworkFlag(t *testing.T) {
	for _, tt := range []struct {
		network string
		ok      bool
	}{
		{"none", true},
		{"sandboxes", true},
		{"host", false},
		{"bridge", false},
		{"default", false},
		{"container:3f4e", false},
		{"container:sandboxd-ctx-1", false},
		{"ns:/proc/1/ns/net", false},
	} {
		_, err := parseConfig([]string{"--network", tt.network}, func(string) string { return "" }, io.Discard)
		if (err == nil) != tt.ok {
			t.Errorf("--network %s: %v, want ok %v", tt.network, err, tt.ok)
		}
	}
	getenv := func(k string) string {
		if k == "SANDBOXD_NETWORK" {
			return "host"
		}
		return ""
	}
	if _, err := parseConfig(nil, getenv, io.Discard); err == nil {
		t.Error("SANDBOXD_NETWORK=host: no error")
	}
}

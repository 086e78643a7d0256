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

func TestEgressFlags(t *testing.T) {
	for _, tt := range []struct {
		args  []string
		env   map[string]string
		ports string
		max   int
		deny  string
		bad   bool
	}{
		{ports: "80,443", max: 64},
		{args: []string{"--egress-ports", "443, 8443"}, ports: "443,8443", max: 64},
		{env: map[string]string{"SANDBOXD_EGRESS_PORTS": "80", "SANDBOXD_EGRESS_MAX_CONNS": "8"}, ports: "80", max: 8},
		{args: []string{"--egress-deny", "203.0.113.7, 198.51.100.9/24,2001:db8::1"}, ports: "80,443", max: 64, deny: "203.0.113.7/32,198.51.100.0/24,2001:db8::1/128"},
		{args: []string{"--egress-ports", "0"}, bad: true},
		{args: []string{"--egress-ports", "70000"}, bad: true},
		{args: []string{"--egress-ports", "http"}, bad: true},
		{args: []string{"--egress-ports", ""}, bad: true},
		{args: []string{"--egress-max-conns", "0"}, bad: true},
		{args: []string{"--egress-deny", "example.com"}, bad: true},
	} {
		c, err := parseConfig(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
		switch {
		case tt.bad && err == nil:
			t.Errorf("%v %v: no error", tt.args, tt.env)
		case tt.bad:
		case err != nil || c.EgressPorts.String() != tt.ports || c.EgressMaxConns != tt.max || c.EgressDeny.String() != tt.deny:
			t.Errorf("%v %v: ports %v, max %d, deny %v, %v; want %s, %d, %s", tt.args, tt.env, &c.EgressPorts, c.EgressMaxConns, &c.EgressDeny, err, tt.ports, tt.max, tt.deny)
		}
	}
}

func TestLogOutputFlag(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  string
		want string
		bad  bool
	}{
		{want: "stderr"},
		{args: []string{"--log-output", "stdout"}, want: "stdout"},
		{env: "stdout", want: "stdout"},
		{args: []string{"--log-output", "stderr"}, env: "stdout", want: "stderr"},
		{args: []string{"--log-output", "/var/log/sandboxd.log"}, bad: true},
		{env: "STDOUT", bad: true},
	} {
		getenv := func(k string) string {
			if k == "SANDBOXD_LOG_OUTPUT" {
				return tt.env
			}
			return ""
		}
		c, err := parseConfig(tt.args, getenv, io.Discard)
		switch {
		case tt.bad && err == nil:
			t.Errorf("%v %q: no error, output %q", tt.args, tt.env, c.LogOutput)
		case !tt.bad && (err != nil || c.LogOutput != tt.want):
			t.Errorf("%v %q: %q %v, want %q", tt.args, tt.env, c.LogOutput, err, tt.want)
		}
	}
}

func TestRunnersFlag(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  string
		want string
		bad  bool
	}{
		{want: "javascript=1,python=2"},
		{args: []string{"--runners", "python=4"}, want: "python=4"},
		{args: []string{"--runners", "none"}, want: ""},
		{env: "python=1,javascript=0", want: "javascript=0,python=1"},
		{args: []string{"--runners", "python"}, bad: true},
		{args: []string{"--runners", "python=-1"}, bad: true},
		{args: []string{"--run-timeout", "0s"}, bad: true},
	} {
		getenv := func(k string) string {
			if k == "SANDBOXD_RUNNERS" {
				return tt.env
			}
			return ""
		}
		c, err := parseConfig(tt.args, getenv, io.Discard)
		switch {
		case tt.bad && err == nil:
			t.Errorf("%v %q: no error, runners %v", tt.args, tt.env, c.Runners.String())
		case !tt.bad && (err != nil || c.Runners.String() != tt.want):
			t.Errorf("%v %q: %q %v, want %q", tt.args, tt.env, c.Runners.String(), err, tt.want)
		}
	}
}

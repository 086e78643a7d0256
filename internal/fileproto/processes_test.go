package fileproto

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseProcesses(t *testing.T) {
	header := "42\x001700000000\x00100\x004096\x00root:x:0:0::/root:/bin/sh\nsandbox:x:61000:61000::/tmp:/usr/sbin/nologin\n\x00"
	// utime 150 and stime 25 ticks, started 250 ticks after boot, 300
	// pages resident.
	stat := func(pid, comm, rest string) string {
		return pid + " (" + comm + ") " + rest
	}
	tail := " 0 -1 4194560 1000 0 28 0 150 25 0 0 20 0 1 0 250 2633728 300 18446744073709551615"
	records := []string{
		"1", "61000", stat("1", "tini", "S 0 1 1"+tail), "/usr/bin/tini -- /usr/local/bin/start-jupyter ",
		"7", "123", stat("7", "a) (b", "R 1 7 1"+tail), "",
	}
	in := header + strings.Join(records, "\x00") + "\x00"
	got, err := ParseProcesses(in)
	if err != nil {
		t.Fatal(err)
	}
	started := time.Unix(1700000000, 0).Add(2500 * time.Millisecond).UTC()
	want := Processes{Self: 42, List: []Process{
		{PID: 1, PPID: 0, Session: 1, UID: 61000, User: "sandbox", Name: "tini", State: 'S',
			Cmdline: "/usr/bin/tini -- /usr/local/bin/start-jupyter", StartTicks: 250, Started: started, CPU: 1750 * time.Millisecond, RSS: 300 * 4096},
		{PID: 7, PPID: 1, Session: 1, UID: 123, Name: "a) (b", State: 'R',
			StartTicks: 250, Started: started, CPU: 1750 * time.Millisecond, RSS: 300 * 4096},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseProcesses =\n%+v\nwant\n%+v", got, want)
	}

	for name, bad := range map[string]string{
		"empty":             "",
		"a header short":    "42\x001700000000\x00100\x004096\x00",
		"no clock ticks":    "42\x001700000000\x000\x004096\x00\x00",
		"a field short":     header + strings.Join(records[:3], "\x00") + "\x00",
		"no NUL at the end": strings.TrimSuffix(in, "\x00"),
		"a stat of another": header + "8\x0061000\x00" + stat("9", "x", "S 0 1 1"+tail) + "\x00\x00",
		"a stat cut short":  header + "8\x0061000\x008 (x) S 0 1 1\x00\x00",
		"a bad uid":         header + "8\x00x\x00" + stat("8", "x", "S 0 1 1"+tail) + "\x00\x00",
		"no name":           header + "8\x0061000\x008 S 0 1 1" + tail + "\x00\x00",
	} {
		if got, err := ParseProcesses(bad); err == nil {
			t.Errorf("%s: ParseProcesses(%q) = %+v, want an error", name, bad, got)
		}
	}
}

func TestIsCommand(t *testing.T) {
	line := strings.Join(Command(OpList, "/workspace", ".", "1", "10"), " ")
	if !IsCommand(line) {
		t.Errorf("IsCommand(a command line of Command) = false")
	}
	for _, other := range []string{"sh -c echo hi", "bash -c " + script, "", "sleep 300"} {
		if IsCommand(other) {
			t.Errorf("IsCommand(%.40q) = true", other)
		}
	}
}

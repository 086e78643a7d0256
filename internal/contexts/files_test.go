package contexts

import (
	"fmt"
	"strings"
	"testing"
)

func TestCleanPath(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		bad      bool
	}{
		{in: "a.txt", want: "a.txt"},
		{in: "dir/sub/a.txt", want: "dir/sub/a.txt"},
		{in: "./dir//a.txt", want: "dir/a.txt"},
		{in: "dir/", want: "dir"},
		{in: "", want: "."},
		{in: ".", want: "."},
		{in: "...", want: "..."},
		{in: "a..b", want: "a..b"},
		{in: "../etc/passwd", bad: true},
		{in: "dir/../../x", bad: true},
		{in: "dir/..", bad: true},
		{in: "dir/../a.txt", bad: true},
		{in: "..", bad: true},
		{in: "/etc/passwd", bad: true},
		{in: "/workspace/a.txt", bad: true},
		{in: "a\x00b", bad: true},
		{in: strings.Repeat("n", 255), want: strings.Repeat("n", 255)},
		{in: "d/" + strings.Repeat("n", 256), bad: true},
		{in: strings.Repeat("d/", 2047) + "n", want: strings.Repeat("d/", 2047) + "n"},
		{in: strings.Repeat("d/", 2048), bad: true},
	} {
		got, err := cleanPath(tt.in)
		switch {
		case tt.bad && Code(err) != CodeInvalidPath:
			t.Errorf("cleanPath(%q) = %q, %v; want INVALID_PATH", tt.in, got, err)
		case !tt.bad && (err != nil || got != tt.want):
			t.Errorf("cleanPath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestCleanCwd(t *testing.T) {
	for _, tt := range []struct {
		in, workDir, want string
		bad               bool
	}{
		{in: "", workDir: "/workspace", want: "."},
		{in: "sub", workDir: "/workspace", want: "sub"},
		{in: "/workspace", workDir: "/workspace", want: "."},
		{in: "/workspace/", workDir: "/workspace", want: "."},
		{in: "/workspace/sub/x", workDir: "/workspace", want: "sub/x"},
		{in: "/workspace/project/a", workDir: "/workspace/project", want: "a"},
		{in: "/workspace", workDir: "/workspace/project", bad: true},
		{in: "/workspace2", workDir: "/workspace", bad: true},
		{in: "/tmp", workDir: "/workspace", bad: true},
		{in: "/workspace/../etc", workDir: "/workspace", bad: true},
		{in: "/workspace/sub/..", workDir: "/workspace", bad: true},
		{in: "../x", workDir: "/workspace", bad: true},
	} {
		got, err := cleanCwd(tt.in, tt.workDir)
		switch {
		case tt.bad && Code(err) != CodeInvalidPath:
			t.Errorf("cleanCwd(%q, %q) = %q, %v; want INVALID_PATH", tt.in, tt.workDir, got, err)
		case !tt.bad && (err != nil || got != tt.want):
			t.Errorf("cleanCwd(%q, %q) = %q, %v; want %q", tt.in, tt.workDir, got, err, tt.want)
		}
	}
}

func TestCommandOutputMarker(t *testing.T) {
	t.Run("stderr before the marker is the script's", func(t *testing.T) {
		o := newCommandOutput(0, nil)
		o.stderrWriter().Write([]byte("sub is not a directory\n"))
		o.close()
		if o.started() || o.early.String() != "sub is not a directory\n" || o.stderr.String() != "" {
			t.Errorf("started %v, early %q, stderr %q", o.started(), o.early.String(), o.stderr.String())
		}
	})
	t.Run("stderr that overtook the marker is the command's", func(t *testing.T) {
		var events []string
		o := newCommandOutput(0, func(stream, text string) { events = append(events, stream+":"+text) })
		o.stderrWriter().Write([]byte("e1\n"))
		o.stdoutWriter().Write([]byte("\x00o1\n"))
		o.stderrWriter().Write([]byte("e2\n"))
		o.close()
		if !o.started() || o.stdout.String() != "o1\n" || o.stderr.String() != "e1\ne2\n" {
			t.Errorf("started %v, stdout %q, stderr %q", o.started(), o.stdout.String(), o.stderr.String())
		}
		if got := strings.Join(events, " "); got != "stderr:e1\n stdout:o1\n stderr:e2\n" {
			t.Errorf("events %q", got)
		}
	})
}

// A listing of more entries than maxListEntries, or of more bytes than
// maxListing, is refused, not cut short; one of as many entries passes.
func TestListTreeBound(t *testing.T) {
	rt := newFakeRuntime(nil)
	m, _ := newTestManager(t, rt, testConfig())
	id := mustCreate(t, m).ID
	entries := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "f/1/644/1736937000/f%d\x00", i)
		}
		return b.String()
	}
	rt.execOut = entries(maxListEntries)
	if files, err := m.ListTree(t.Context(), id, "", 3); err != nil || len(files) != maxListEntries {
		t.Errorf("%d entries: %d listed, %v", maxListEntries, len(files), err)
	}
	rt.execOut = entries(maxListEntries + 1)
	if files, err := m.ListTree(t.Context(), id, "", 3); Code(err) != CodeInvalid {
		t.Errorf("%d entries: %d listed, %v; want INVALID_REQUEST", maxListEntries+1, len(files), err)
	}
	// Fewer entries, of long names, past the bytes a listing may have.
	long := strings.Repeat("n", 4000)
	var b strings.Builder
	for i := 0; b.Len() <= maxListing; i++ {
		fmt.Fprintf(&b, "f/1/644/1736937000/%s%d\x00", long, i)
	}
	rt.execOut = b.String()
	if files, err := m.ListTree(t.Context(), id, "", 3); Code(err) != CodeInvalid {
		t.Errorf("a listing over %d bytes: %d listed, %v; want INVALID_REQUEST", maxListing, len(files), err)
	}
	for _, depth := range []int{0, maxListDepth + 1} {
		if _, err := m.ListTree(t.Context(), id, "", depth); Code(err) != CodeInvalid {
			t.Errorf("depth %d: %v; want INVALID_REQUEST", depth, err)
		}
	}
}

// Modes past 0o7777 are refused before anything runs.
func TestModeBound(t *testing.T) {
	m, _ := newTestManager(t, newFakeRuntime(nil), testConfig())
	id := mustCreate(t, m).ID
	if _, err := m.MakeDir(t.Context(), id, "d", 0o10000, true); Code(err) != CodeInvalid {
		t.Errorf("MakeDir with mode 0o10000: %v", err)
	}
	if _, err := m.WriteFileMode(t.Context(), id, "f", strings.NewReader("x"), 0o10000); Code(err) != CodeInvalid {
		t.Errorf("WriteFileMode with mode 0o10000: %v", err)
	}
}

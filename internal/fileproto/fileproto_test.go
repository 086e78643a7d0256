package fileproto

import (
	"reflect"
	"testing"
	"time"
)

func TestParseInfo(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		want     Info
		bad      bool
	}{
		{name: "file", in: "f/1234/644/1736937000.1234567890",
			want: Info{Regular: true, Size: 1234, Mode: 0o644, ModTime: time.Unix(1736937000, 123456789).UTC()}},
		{name: "directory, setuid, whole seconds", in: "d/4096/4755/1736937000",
			want: Info{IsDir: true, Size: 4096, Mode: 0o4755, ModTime: time.Unix(1736937000, 0).UTC()}},
		{name: "short fraction", in: "f/0/600/1736937000.5", want: Info{Regular: true, Mode: 0o600, ModTime: time.Unix(1736937000, 5e8).UTC()}},
		{name: "FIFO", in: "p/0/644/1", want: Info{Mode: 0o644, ModTime: time.Unix(1, 0).UTC()}},
		{name: "empty", in: "", bad: true},
		{name: "a field short", in: "f/1/644", bad: true},
		{name: "a field more", in: "f/1/644/1/x", bad: true},
		{name: "bad size", in: "f/x/644/1", bad: true},
		{name: "mode not octal", in: "f/1/9/1", bad: true},
		{name: "bad mtime", in: "f/1/644/x", bad: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseInfo(tt.in)
			if (err != nil) != tt.bad || got != tt.want {
				t.Errorf("ParseInfo(%q) = %+v, %v; want %+v, failure %v", tt.in, got, err, tt.want, tt.bad)
			}
		})
	}
}

func TestParseList(t *testing.T) {
	mtime := time.Unix(1736937000, 0).UTC()
	for _, tt := range []struct {
		name, in string
		want     []Entry
		bad      bool
	}{
		{name: "empty dir", in: "", want: nil},
		{name: "entries", in: "f/3/644/1736937000/a.txt\x00d/4096/755/1736937000/sub\x00",
			want: []Entry{{"a.txt", Info{Regular: true, Size: 3, Mode: 0o644, ModTime: mtime}}, {"sub", Info{IsDir: true, Size: 4096, Mode: 0o755, ModTime: mtime}}}},
		{name: "names with spaces, dots and newlines", in: "f/0/644/1736937000/ a.b\nc \x00",
			want: []Entry{{" a.b\nc ", Info{Regular: true, Mode: 0o644, ModTime: mtime}}}},
		{name: "paths below the directory", in: "d/4096/755/1736937000/sub\x00p/0/644/1736937000/sub/deeper/fifo\x00",
			want: []Entry{{"sub", Info{IsDir: true, Size: 4096, Mode: 0o755, ModTime: mtime}}, {"sub/deeper/fifo", Info{Mode: 0o644, ModTime: mtime}}}},
		{name: "no name", in: "f/3/644\x00", bad: true},
		{name: "an empty name", in: "f/3/644/1736937000/\x00", bad: true},
		{name: "bad description", in: "f/3/644/1736937000/a\x00f/x/644/1/b\x00", bad: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseList(tt.in)
			if (err != nil) != tt.bad {
				t.Fatalf("ParseList(%q) = %+v, %v; want failure %v", tt.in, got, err, tt.bad)
			}
			if !tt.bad && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseList(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseWrite(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		tmp      string
		written  int64
		bad      bool
	}{
		{name: "written", in: "/w/.sandboxd-upload.abc\x00123", tmp: "/w/.sandboxd-upload.abc", written: 123},
		{name: "nothing written", in: "/w/.sandboxd-upload.abc\x000", tmp: "/w/.sandboxd-upload.abc"},
		{name: "no count: the temporary file is still named", in: "/w/.sandboxd-upload.abc\x00", tmp: "/w/.sandboxd-upload.abc", bad: true},
		{name: "bad count", in: "/w/.sandboxd-upload.abc\x0012x", tmp: "/w/.sandboxd-upload.abc", bad: true},
		{name: "no temporary file", in: "", bad: true},
		{name: "a name cut short", in: "/w/.sandboxd-up", bad: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tmp, written, err := ParseWrite(tt.in)
			if tmp != tt.tmp || written != tt.written || (err != nil) != tt.bad {
				t.Errorf("ParseWrite(%q) = %q, %d, %v; want %q, %d, failure %v", tt.in, tmp, written, err, tt.tmp, tt.written, tt.bad)
			}
		})
	}
}

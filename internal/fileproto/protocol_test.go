package fileproto

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// The tests below run protocol.sh in a container of the kernel image,
// with the docker CLI, as the daemon runs it: as the context's user, in a
// read-only container with no capabilities, on a working dir of its own.

const (
	workDir = "/workspace"
	user    = "61000:61000" // the images' USER, as contexts.ContextUser
)

// box is a container to run the script in.
type box struct {
	tb   testing.TB
	name string
}

// result is what one run of the script did.
type result struct {
	stdout, stderr string
	code           int
}

// startBox starts a container of the kernel image whose working dir is a
// tmpfs of size bytes, and whose processes may write files of at most
// fsize bytes; extra are more options of docker run.
func startBox(tb testing.TB, size, fsize int, extra ...string) *box {
	tb.Helper()
	testenv.RequireDocker(tb)
	b := &box{tb: tb, name: testenv.Owner(tb)}
	tb.Cleanup(func() { exec.Command("docker", "rm", "-f", b.name).Run() })
	args := []string{"run", "-d", "--name", b.name, "--network", "none", "--read-only",
		"--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--user", user,
		"--ulimit", "fsize=" + strconv.Itoa(fsize),
		"--tmpfs", "/tmp:rw,size=16m",
		"--tmpfs", workDir + ":rw,mode=0755,uid=61000,gid=61000,size=" + strconv.Itoa(size)}
	args = append(append(args, extra...), "--entrypoint", "sleep", testenv.KernelImage(), "infinity")
	if out, err := exec.Command("docker", args...).CombinedOutput(); err != nil {
		tb.Fatalf("docker run: %v: %s", err, out)
	}
	return b
}

// with returns b for use by the test tb, a subtest of b's.
func (b *box) with(tb testing.TB) *box { return &box{tb: tb, name: b.name} }

// exec runs cmd in the container as the context's user, with stdin.
func (b *box) exec(stdin string, cmd []string) result {
	b.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, "docker", append([]string{"exec", "-i", "-u", user, b.name}, cmd...)...)
	c.Stdin = strings.NewReader(stdin)
	var stdout, stderr strings.Builder
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	var exit *exec.ExitError
	if ctx.Err() != nil || err != nil && !errors.As(err, &exit) {
		b.tb.Fatalf("docker exec %s: %v (%v): %s", cmd[min(4, len(cmd)-1)], err, ctx.Err(), stderr.String())
	}
	return result{stdout.String(), stderr.String(), c.ProcessState.ExitCode()}
}

// op runs op of the script in the working dir.
func (b *box) op(stdin string, op Op, args ...string) result {
	b.tb.Helper()
	return b.exec(stdin, Command(op, workDir, args...))
}

// sh runs a shell script in the working dir, to set up what a test needs.
func (b *box) sh(script string) string {
	b.tb.Helper()
	r := b.exec("", []string{"sh", "-c", "cd " + workDir + " && " + script})
	if r.code != 0 {
		b.tb.Fatalf("%s: exit %d: %s", script, r.code, r.stderr)
	}
	return r.stdout
}

// put writes data to the file at rel as the daemon does, and returns the
// file's description.
func (b *box) put(rel, data string) Info {
	b.tb.Helper()
	w := b.op(data, OpWrite, rel)
	tmp, n, err := ParseWrite(w.stdout)
	if w.code != 0 || err != nil || n != int64(len(data)) {
		b.tb.Fatalf("write %.40s: exit %d, %q, %d bytes, %v: %s", rel, w.code, tmp, n, err, w.stderr)
	}
	c := b.op("", OpCommit, rel, tmp)
	info, err := ParseInfo(c.stdout)
	if c.code != 0 || err != nil {
		b.tb.Fatalf("commit %.40s: exit %d, %v: %s", rel, c.code, err, c.stderr)
	}
	return info
}

// list lists the directory rel, its entries alone, as ListFiles does.
func (b *box) list(rel string) result {
	b.tb.Helper()
	return b.op("", OpList, rel, "1", "100000")
}

// temps returns the upload temporary files anywhere in the working dir.
func (b *box) temps() string {
	b.tb.Helper()
	return b.sh("find . -name '.sandboxd-upload.*'")
}

// wantCode fails tb unless r ended with code.
func wantCode(tb testing.TB, what string, r result, code int) {
	tb.Helper()
	if r.code != code {
		tb.Errorf("%s: exit %d, want %d; stdout %.80q, stderr %.200q", what, r.code, code, r.stdout, r.stderr)
	}
}

func TestProtocolFiles(t *testing.T) {
	// A device in the working dir, which a user could not make.
	b := startBox(t, 64<<20, 64<<20, "--mount", "type=bind,source=/dev/null,target="+workDir+"/devnull")

	t.Run("write, commit and read", func(t *testing.T) {
		b := b.with(t)
		info := b.put("sub/dir/a.txt", "hello")
		if info.IsDir || info.Size != 5 || info.Mode != 0o644 || time.Since(info.ModTime) > time.Hour {
			t.Errorf("committed %+v", info)
		}
		r := b.op("", OpRead, "sub/dir/a.txt")
		head, data, ok := strings.Cut(r.stdout, "\x00")
		if got, err := ParseInfo(head); r.code != 0 || !ok || err != nil || got != info || data != "hello" {
			t.Errorf("read: exit %d, description %+v (%v), data %q", r.code, got, err, data)
		}
	})

	t.Run("write makes a temporary file beside the target", func(t *testing.T) {
		b := b.with(t)
		w := b.op("some bytes", OpWrite, "sub/b.txt")
		tmp, n, err := ParseWrite(w.stdout)
		if w.code != 0 || err != nil || n != 10 || !strings.HasPrefix(tmp, workDir+"/sub/.sandboxd-upload.") {
			t.Fatalf("write: exit %d, %q, %d, %v", w.code, tmp, n, err)
		}
		if got := b.sh("cat " + tmp); got != "some bytes" {
			t.Errorf("the temporary file holds %q", got)
		}
		if r := b.op("", OpRead, "sub/b.txt"); r.code != ExitNotFound {
			t.Errorf("the target exists before the commit: exit %d", r.code)
		}
		wantCode(t, "abort", b.op("", OpAbort, ".", tmp), 0)
		if got := b.temps(); got != "" {
			t.Errorf("left after abort: %q", got)
		}
	})

	t.Run("commit keeps the mode of the file it replaces", func(t *testing.T) {
		b := b.with(t)
		b.put("private.txt", "v1")
		b.sh("chmod 0600 private.txt")
		if info := b.put("private.txt", "version 2"); info.Mode != 0o600 || info.Size != 9 {
			t.Errorf("replaced: %+v", info)
		}
		// Unless it is given one.
		for _, rel := range []string{"private.txt", "script.sh"} {
			w := b.op("#!/bin/sh", OpWrite, rel)
			tmp, _, _ := ParseWrite(w.stdout)
			c := b.op("", OpCommit, rel, tmp, "0750")
			if info, err := ParseInfo(c.stdout); c.code != 0 || err != nil || info.Mode != 0o750 {
				t.Errorf("commit %s with a mode: exit %d, %+v, %v", rel, c.code, info, err)
			}
		}
	})

	t.Run("write refuses the working dir, a directory, and a file as a parent", func(t *testing.T) {
		b := b.with(t)
		b.sh("mkdir -p adir && touch afile")
		wantCode(t, "write .", b.op("x", OpWrite, "."), ExitIsDir)
		wantCode(t, "write adir", b.op("x", OpWrite, "adir"), ExitIsDir)
		wantCode(t, "write afile/sub/x", b.op("x", OpWrite, "afile/sub/x"), ExitNotDir)
		wantCode(t, "write afile/x", b.op("x", OpWrite, "afile/x"), ExitNotDir)
		if got := b.temps(); got != "" {
			t.Errorf("left: %q", got)
		}
	})

	t.Run("list", func(t *testing.T) {
		b := b.with(t)
		b.sh("mkdir -p l/d && printf 123 >l/f && ln -s d l/dlink && ln -s f l/flink && printf x >'l/a name\nwith a newline'")
		r := b.list("l")
		list, err := ParseList(r.stdout)
		if r.code != 0 || err != nil {
			t.Fatalf("list: exit %d, %v: %s", r.code, err, r.stderr)
		}
		var got []string
		for _, e := range list {
			if e.IsDir {
				got = append(got, e.Name+"/")
			} else {
				got = append(got, e.Name+":"+strconv.FormatInt(e.Size, 10))
			}
		}
		slices.Sort(got)
		if want := []string{"a name\nwith a newline:1", "d/", "dlink/", "f:3", "flink:3"}; !slices.Equal(got, want) {
			t.Errorf("listed %q, want %q", got, want)
		}
		wantCode(t, "list a file", b.list("l/f"), ExitNotDir)
		wantCode(t, "list a missing dir", b.list("nope"), ExitNotFound)
		b.sh("mkdir -p locked && chmod 0 locked")
		wantCode(t, "list a dir it cannot read", b.list("locked"), ExitDenied)
		b.sh("chmod 0755 locked")
	})

	t.Run("delete", func(t *testing.T) {
		b := b.with(t)
		b.sh("mkdir -p del/tree/deep && touch del/tree/deep/x del/f && echo kept >/tmp/kept && ln -s /tmp/kept del/out")
		for _, p := range []string{"del/f", "del/tree", "del/out"} {
			wantCode(t, "delete "+p, b.op("", OpDelete, p), 0)
		}
		if got := b.sh("ls -A del; cat /tmp/kept"); got != "kept\n" {
			t.Errorf("after the deletes: %q", got)
		}
		wantCode(t, "delete a missing file", b.op("", OpDelete, "del/nope"), ExitNotFound)
		wantCode(t, "delete in a missing dir", b.op("", OpDelete, "nope/x"), ExitNotFound)
	})

	t.Run("run", func(t *testing.T) {
		b := b.with(t)
		b.sh("mkdir -p r/sub && touch r/file")
		r := b.op("", OpRun, "r/sub", "sh", "-c", "pwd; echo oops >&2; exit 3")
		if r.code != 3 || r.stdout != "\x00"+workDir+"/r/sub\n" || r.stderr != "oops\n" {
			t.Errorf("run: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		for _, tt := range []struct {
			cwd  string
			code int
		}{{"r/nope", ExitNotFound}, {"r/file", ExitNotDir}} {
			r := b.op("", OpRun, tt.cwd, "echo", "ran")
			wantCode(t, "run in "+tt.cwd, r, tt.code)
			if r.stdout != "" {
				t.Errorf("run in %s: the command ran, or the mark came: %q", tt.cwd, r.stdout)
			}
		}
	})

	t.Run("read refuses what is not a regular file", func(t *testing.T) {
		b := b.with(t)
		b.sh(`mkdir -p s && mkfifo s/fifo && ln -s fifo s/fifo_link && ln -s /dev/null s/null_link &&
python3 -c "import socket; socket.socket(socket.AF_UNIX).bind('s/sock')" && touch s/locked && chmod 0 s/locked`)
		for _, tt := range []struct {
			path string
			code int
		}{
			{"s/fifo", ExitNotRegular},
			{"s/fifo_link", ExitNotRegular},
			{"s/sock", ExitNotRegular},
			{"devnull", ExitNotRegular},
			{"s/null_link", ExitOutside},
			{"s", ExitIsDir},
			{".", ExitIsDir},
			{"s/nope", ExitNotFound},
			{"s/locked", ExitDenied},
		} {
			start := time.Now()
			r := b.op("", OpRead, tt.path)
			wantCode(t, "read "+tt.path, r, tt.code)
			if r.stdout != "" {
				t.Errorf("read %s: %q on stdout", tt.path, r.stdout)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("read %s took %v", tt.path, d)
			}
		}
	})

	t.Run("symlinks inside the working dir are followed", func(t *testing.T) {
		b := b.with(t)
		b.put("in/target.txt", "through a link")
		b.sh("ln -s in/target.txt in_link && ln -s in in_dir && ln -s loop loop")
		// realpath -m takes a loop for a file yet to be made.
		wantCode(t, "read a loop", b.op("", OpRead, "loop"), ExitNotFound)
		r := b.op("", OpRead, "in_link")
		if _, data, _ := strings.Cut(r.stdout, "\x00"); r.code != 0 || data != "through a link" {
			t.Errorf("read in_link: exit %d, %q", r.code, r.stdout)
		}
		if r := b.list("in_dir"); r.code != 0 || !strings.HasSuffix(r.stdout, "/target.txt\x00") {
			t.Errorf("list in_dir: exit %d, %q", r.code, r.stdout)
		}
		if info := b.put("in_dir/new.txt", "new"); info.Size != 3 {
			t.Errorf("put through in_dir: %+v", info)
		}
		if got := b.sh("cat in/new.txt"); got != "new" {
			t.Errorf("in/new.txt holds %q", got)
		}
	})

	t.Run("symlinks out of the working dir are refused", func(t *testing.T) {
		b := b.with(t)
		b.sh("echo secret >/tmp/secret && ln -s /tmp/secret out_file && ln -s /tmp out_dir && ln -s .. up")
		for _, tt := range []struct {
			what string
			r    result
			code int
		}{
			{"read out_file", b.op("", OpRead, "out_file"), ExitOutside},
			{"read out_dir/secret", b.op("", OpRead, "out_dir/secret"), ExitOutside},
			{"read up/etc/passwd", b.op("", OpRead, "up/etc/passwd"), ExitOutside},
			{"list out_dir", b.list("out_dir"), ExitOutside},
			{"list up", b.list("up"), ExitOutside},
			{"write out_file", b.op("x", OpWrite, "out_file"), ExitOutside},
			{"write out_dir/new", b.op("x", OpWrite, "out_dir/new"), ExitOutside},
			{"delete out_dir/secret", b.op("", OpDelete, "out_dir/secret"), ExitOutside},
			{"run in out_dir", b.op("", OpRun, "out_dir", "true"), ExitOutside},
			{"stat out_file", b.op("", OpStat, "out_file"), ExitOutside},
			{"stat up", b.op("", OpStat, "up"), ExitOutside},
			{"mkdir out_dir/new", b.op("", OpMkdir, "out_dir/new", "0755", "1"), ExitOutside},
			{"mkdir up/new", b.op("", OpMkdir, "up/new", "0755", "0"), ExitOutside},
			{"move out_dir/secret", b.op("", OpMove, "out_dir/secret", "stolen"), ExitOutside},
			{"move to out_dir/new", b.op("", OpMove, "out_file", "out_dir/new"), ExitOutside},
			{"list . deep", b.op("", OpList, ".", "5", "100"), 0},
		} {
			wantCode(t, tt.what, tt.r, tt.code)
		}
		if got := b.sh("cat /tmp/secret; ls /tmp/stolen /tmp/new 2>&1 | wc -l"); got != "secret\n2\n" {
			t.Errorf("outside the working dir: %q", got)
		}
		if r := b.op("", OpList, ".", "5", "100"); strings.Contains(r.stdout, "secret") {
			t.Errorf("a deep listing went out of the working dir: %q", r.stdout)
		}
		if got := b.temps(); got != "" {
			t.Errorf("left: %q", got)
		}
	})

	t.Run("long names and paths", func(t *testing.T) {
		b := b.with(t)
		name := strings.Repeat("n", 255)
		if info := b.put("long/"+name, "x"); info.Size != 1 {
			t.Errorf("put a 255-byte name: %+v", info)
		}
		r := b.list("long")
		if list, err := ParseList(r.stdout); err != nil || len(list) != 1 || list[0].Name != name {
			t.Errorf("list: %d entries, %v", len(list), err)
		}

		// One byte more is too long a name: the write makes its temporary
		// file, but it cannot be put in place.
		w := b.op("x", OpWrite, "long/"+name+"n")
		tmp, _, err := ParseWrite(w.stdout)
		if w.code != 0 || err != nil {
			t.Fatalf("write a 256-byte name: exit %d, %v", w.code, err)
		}
		wantCode(t, "commit a 256-byte name", b.op("", OpCommit, "long/"+name+"n", tmp), ExitIsDir)
		wantCode(t, "abort", b.op("", OpAbort, ".", tmp), 0)
		wantCode(t, "read a 256-byte name", b.op("", OpRead, "long/"+name+"n"), ExitNotFound)

		// 15 directories of 250 bytes: a path of 3782 bytes, under the
		// 4096 of PATH_MAX with the working dir and the temporary file's
		// name.
		deep := strings.Repeat(strings.Repeat("d", 250)+"/", 15) + "f.txt"
		if info := b.put(deep, "deep"); info.Size != 4 {
			t.Errorf("put %d bytes deep: %+v", len(deep), info)
		}
		r = b.op("", OpRead, deep)
		if _, data, _ := strings.Cut(r.stdout, "\x00"); r.code != 0 || data != "deep" {
			t.Errorf("read deep: exit %d, %q", r.code, data)
		}
		if r := b.list(deep[:len(deep)-len("/f.txt")]); r.code != 0 || !strings.HasSuffix(r.stdout, "/f.txt\x00") {
			t.Errorf("list deep: exit %d, %q", r.code, r.stdout)
		}
		wantCode(t, "run deep", b.op("", OpRun, deep[:len(deep)-len("/f.txt")], "true"), 0)

		// Past PATH_MAX, the temporary file cannot be made.
		deeper := strings.Repeat(strings.Repeat("d", 250)+"/", 17) + "f.txt"
		wantCode(t, "write past PATH_MAX", b.op("x", OpWrite, deeper), ExitDenied)
		wantCode(t, "read past PATH_MAX", b.op("", OpRead, deeper), ExitNotFound)
		if got := b.temps(); got != "" {
			t.Errorf("left: %q", got)
		}
		wantCode(t, "delete deep", b.op("", OpDelete, strings.Repeat("d", 250)), 0)
	})

	t.Run("list descends to a depth, into directories but not symlinks", func(t *testing.T) {
		b := b.with(t)
		b.sh("mkdir -p tree/a/b/c && touch tree/f tree/a/g tree/a/b/c/h && ln -s a tree/alink && mkfifo tree/a/fifo")
		names := func(depth, limit string) []string {
			t.Helper()
			r := b.op("", OpList, "tree", depth, limit)
			list, err := ParseList(r.stdout)
			if r.code != 0 || err != nil {
				t.Fatalf("list to depth %s: exit %d, %v: %s", depth, r.code, err, r.stderr)
			}
			var got []string
			for _, e := range list {
				switch {
				case e.IsDir:
					got = append(got, e.Name+"/")
				case e.Regular:
					got = append(got, e.Name)
				default:
					got = append(got, e.Name+"|")
				}
			}
			slices.Sort(got)
			return got
		}
		for _, tt := range []struct {
			depth string
			want  []string
		}{
			{"1", []string{"a/", "alink/", "f"}},
			{"2", []string{"a/", "a/b/", "a/fifo|", "a/g", "alink/", "f"}},
			{"9", []string{"a/", "a/b/", "a/b/c/", "a/b/c/h", "a/fifo|", "a/g", "alink/", "f"}},
		} {
			if got := names(tt.depth, "100"); !slices.Equal(got, tt.want) {
				t.Errorf("depth %s: %q, want %q", tt.depth, got, tt.want)
			}
		}
		if got := names("9", "3"); len(got) != 3 {
			t.Errorf("with a limit of 3: %q", got)
		}
	})

	t.Run("stat", func(t *testing.T) {
		b := b.with(t)
		b.sh("mkdir -p st/d && printf 1234 >st/f && mkfifo st/fifo && ln -s f st/link")
		for _, tt := range []struct {
			path         string
			dir, regular bool
			size         int64
		}{{"st/f", false, true, 4}, {"st/link", false, true, 4}, {"st/d", true, false, -1}, {"st/fifo", false, false, 0}, {".", true, false, -1}} {
			r := b.op("", OpStat, tt.path)
			info, err := ParseInfo(r.stdout)
			if r.code != 0 || err != nil || info.IsDir != tt.dir || info.Regular != tt.regular || tt.size >= 0 && info.Size != tt.size {
				t.Errorf("stat %s: exit %d, %+v, %v", tt.path, r.code, info, err)
			}
		}
		wantCode(t, "stat a missing file", b.op("", OpStat, "st/nope"), ExitNotFound)
		wantCode(t, "stat below a file", b.op("", OpStat, "st/f/x"), ExitNotFound)
	})

	t.Run("mkdir", func(t *testing.T) {
		b := b.with(t)
		r := b.op("", OpMkdir, "mk/a/b", "0700", "1")
		if info, err := ParseInfo(r.stdout); r.code != 0 || err != nil || !info.IsDir || info.Mode != 0o700 {
			t.Errorf("mkdir -p: exit %d, %+v, %v: %s", r.code, info, err, r.stderr)
		}
		wantCode(t, "mkdir -p of a directory that is there", b.op("", OpMkdir, "mk/a/b", "0755", "1"), 0)
		wantCode(t, "mkdir of a directory that is there", b.op("", OpMkdir, "mk/a/b", "0755", "0"), ExitExists)
		wantCode(t, "mkdir without its parent", b.op("", OpMkdir, "mk/x/y", "0755", "0"), ExitNotFound)
		wantCode(t, "mkdir in a directory that is there", b.op("", OpMkdir, "mk/a/c", "0755", "0"), 0)
		b.sh("touch mk/file && ln -s nowhere mk/dangling")
		for _, parents := range []string{"0", "1"} {
			wantCode(t, "mkdir of a file, parents "+parents, b.op("", OpMkdir, "mk/file", "0755", parents), ExitExists)
			wantCode(t, "mkdir below a file, parents "+parents, b.op("", OpMkdir, "mk/file/x", "0755", parents), ExitNotDir)
		}
		// As everywhere, a symlink is what it points to.
		wantCode(t, "mkdir through a dangling link", b.op("", OpMkdir, "mk/dangling", "0755", "0"), 0)
		if got := b.sh("ls -d mk/*/ mk/a/*/ | sort; find mk/x 2>&1 | wc -l"); got != "mk/a/\nmk/a/b/\nmk/a/c/\nmk/dangling/\nmk/nowhere/\n1\n" {
			t.Errorf("made: %q", got)
		}
	})

	t.Run("move", func(t *testing.T) {
		b := b.with(t)
		b.sh("mkdir -p mv/d/sub mv/e && printf one >mv/one && printf two >mv/two && ln -s one mv/link && echo kept >/tmp/kept && ln -s /tmp/kept mv/out")
		r := b.op("", OpMove, "mv/one", "mv/new/deep/uno")
		if info, err := ParseInfo(r.stdout); r.code != 0 || err != nil || info.Size != 3 {
			t.Errorf("move to new dirs: exit %d, %+v, %v: %s", r.code, info, err, r.stderr)
		}
		wantCode(t, "move over a file", b.op("", OpMove, "mv/two", "mv/new/deep/uno"), 0)
		wantCode(t, "move a directory", b.op("", OpMove, "mv/d", "mv/d2"), 0)
		wantCode(t, "move a directory onto one", b.op("", OpMove, "mv/d2", "mv/e"), ExitExists)
		wantCode(t, "move a file onto a directory", b.op("", OpMove, "mv/new/deep/uno", "mv/e"), ExitExists)
		wantCode(t, "move a directory onto a file", b.op("", OpMove, "mv/d2", "mv/new/deep/uno"), ExitExists)
		wantCode(t, "move a directory into itself", b.op("", OpMove, "mv/d2", "mv/d2/sub/x"), ExitExists)
		wantCode(t, "move a missing file", b.op("", OpMove, "mv/nope", "mv/x"), ExitNotFound)
		wantCode(t, "move to below a file", b.op("", OpMove, "mv/d2", "mv/new/deep/uno/x"), ExitNotDir)
		// Links move themselves, wherever they point.
		wantCode(t, "move a link", b.op("", OpMove, "mv/out", "mv/out2"), 0)
		if got := b.sh("cd mv && find . | sort && cat new/deep/uno /tmp/kept && readlink out2"); got != ".\n./d2\n./d2/sub\n./e\n./link\n./new\n./new/deep\n./new/deep/uno\n./out2\ntwokept\n/tmp/kept\n" {
			t.Errorf("after the moves: %q", got)
		}
	})

	t.Run("the working dir is gone", func(t *testing.T) {
		b := b.with(t)
		for _, op := range []Op{OpRead, OpWrite, OpList, OpStat, OpMkdir, OpMove, OpDelete, OpRun, OpProcesses, OpKill} {
			wantCode(t, string(op), b.exec("", Command(op, workDir+"/gone", "x", "true")), ExitNoWorkDir)
		}
	})

	t.Run("an unknown operation", func(t *testing.T) {
		b := b.with(t)
		wantCode(t, "chmod", b.op("", "chmod", "x"), 1)
	})
}

// A write that fills the disk, or goes past the largest file the
// container may write, fails with ExitWriteFailed and leaves no temporary
// file; the disk-full one says so on stderr, which the daemon tells apart.
func TestProtocolWriteFailed(t *testing.T) {
	b := startBox(t, 1<<20, 768<<10)
	b.put("filler", strings.Repeat("f", 600<<10))

	r := b.op(strings.Repeat("x", 600<<10), OpWrite, "sub/more")
	wantCode(t, "write past the disk's end", r, ExitWriteFailed)
	if !strings.Contains(r.stderr, "No space left") {
		t.Errorf("stderr %q", r.stderr)
	}
	if got := b.temps(); got != "" {
		t.Errorf("left: %q", got)
	}

	wantCode(t, "delete", b.op("", OpDelete, "filler"), 0)
	r = b.op(strings.Repeat("x", 900<<10), OpWrite, "big")
	wantCode(t, "write past the file size limit", r, ExitWriteFailed)
	if strings.Contains(r.stderr, "No space left") {
		t.Errorf("stderr %q", r.stderr)
	}
	if got := b.temps(); got != "" {
		t.Errorf("left: %q", got)
	}
	if got := b.sh("ls -A"); got != "sub\n" {
		t.Errorf("in the working dir: %q", got)
	}
}

// The processes of a container, and the killing of one, in a container
// whose init reaps what it adopts, as the kernel images' tini does.
func TestProtocolProcesses(t *testing.T) {
	b := startBox(t, 1<<20, 1<<20, "--init")
	// A process whose name has parentheses and spaces, left behind by the
	// exec that started it.
	const sleeper = `import ctypes, time; ctypes.CDLL(None).prctl(15, b"a) (b", 0, 0, 0); time.sleep(1000)`
	b.sh(`(python3 -c '` + sleeper + `' >/dev/null 2>&1 &)`)
	// And one whose command line is longer than the 2 KiB the listing
	// keeps of it.
	long := strings.Repeat("x", 3000)
	b.sh(`(python3 -c 'import time; time.sleep(1000)' ` + long + ` >/dev/null 2>&1 &)`)
	list := func(limit string) Processes {
		t.Helper()
		r := b.op("", OpProcesses, ".", limit)
		ps, err := ParseProcesses(r.stdout)
		if r.code != 0 || err != nil {
			t.Fatalf("processes: exit %d, %v: %s", r.code, err, r.stderr)
		}
		return ps
	}
	ps := list("100")
	var sleeping Process
	var self int
	for _, p := range ps.List {
		switch {
		case p.Name == "a) (b":
			sleeping = p
		case strings.HasSuffix(p.Cmdline, "xxx"):
			if want := ("python3 -c import time; time.sleep(1000) " + long)[:2048]; p.Cmdline != want {
				t.Errorf("a long command line: %d bytes, want its first 2048", len(p.Cmdline))
			}
			long = ""
		case p.PID == ps.Self:
			self++
		}
	}
	if sleeping.PID == 0 || sleeping.PPID != 1 || sleeping.Cmdline != "python3 -c "+sleeper || sleeping.User != "sandbox" || sleeping.UID != 61000 ||
		sleeping.State != 'S' || time.Since(sleeping.Started) > time.Hour || time.Since(sleeping.Started) < -time.Minute || sleeping.RSS <= 0 {
		t.Fatalf("the sleeper: %+v, in %+v", sleeping, ps.List)
	}
	if self != 1 || !slices.ContainsFunc(ps.List, func(p Process) bool { return p.PID == 1 && p.Name == "docker-init" }) {
		t.Errorf("the listing's own process %d seen %d times, or init missing, in %+v", ps.Self, self, ps.List)
	}
	if long != "" {
		t.Errorf("the process with a long command line is not listed")
	}
	if got := list("2"); len(got.List) != 2 {
		t.Errorf("with a limit of 2: %d processes", len(got.List))
	}

	pid, start := strconv.Itoa(sleeping.PID), strconv.FormatUint(sleeping.StartTicks, 10)
	wantCode(t, "kill a process that started at another time", b.op("", OpKill, ".", pid, start+"1"), ExitNotFound)
	wantCode(t, "kill", b.op("", OpKill, ".", pid, start), 0)
	for _, p := range list("100").List {
		if p.PID == sleeping.PID && p.State != 'Z' {
			t.Errorf("killed, yet %+v", p)
		}
	}
	wantCode(t, "kill a process that is gone", b.op("", OpKill, ".", "999999", "1"), ExitNotFound)
}

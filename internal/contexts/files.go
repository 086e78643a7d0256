package contexts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sandboxd/sandboxd/internal/bound"
	"github.com/sandboxd/sandboxd/internal/fileproto"
)

// FileInfo describes a file or directory in a context.
type FileInfo struct {
	Name string // the last element of Path
	// Path is relative to the context's working dir.
	Path string
	Size int64
	// Mode holds the Unix permission bits, setuid, setgid and sticky
	// included: 0o644.
	Mode    uint32
	ModTime time.Time
	IsDir   bool
	Regular bool // a regular file: not a directory, FIFO, socket or device
}

// Linux's bounds on a path and on one name in it (PATH_MAX, NAME_MAX): a
// path past them is refused before an upload is read, not after.
const (
	maxPath = 4096
	maxName = 255
)

// cleanPath checks a path given relative to a context's working dir and
// returns it cleaned, "." for the working dir itself. Absolute paths and
// .. segments are refused outright, whatever they would resolve to: a
// client that sends them has lost track of where it is.
func cleanPath(p string) (string, error) {
	switch {
	case strings.HasPrefix(p, "/"):
		return "", Errorf(CodeInvalidPath, "path %q must be relative to the working dir", p)
	case strings.ContainsRune(p, 0):
		return "", Errorf(CodeInvalidPath, "path %q contains a NUL byte", p)
	case len(p) >= maxPath:
		return "", Errorf(CodeInvalidPath, "path must be shorter than %d bytes", maxPath)
	}
	for _, seg := range strings.Split(p, "/") {
		switch {
		case seg == "..":
			return "", Errorf(CodeInvalidPath, "path %q must not contain ..", p)
		case len(seg) > maxName:
			return "", Errorf(CodeInvalidPath, "a name in path %q is longer than %d bytes", p, maxName)
		}
	}
	return path.Clean("./" + p), nil
}

// cleanCwd is cleanPath for a command's cwd, which may also be absolute
// when it lies in the working dir.
func cleanCwd(cwd, workDir string) (string, error) {
	if strings.HasPrefix(cwd, "/") {
		if slices.Contains(strings.Split(cwd, "/"), "..") {
			return "", Errorf(CodeInvalidPath, "cwd %q must not contain ..", cwd)
		}
		c := path.Clean(cwd)
		if c == workDir {
			return ".", nil
		}
		rel, ok := strings.CutPrefix(c, workDir+"/")
		if !ok {
			return "", Errorf(CodeInvalidPath, "cwd %q must be in the working dir %s", cwd, workDir)
		}
		return rel, nil
	}
	return cleanPath(cwd)
}

// fileError turns a failure of the file protocol into the error a client
// sees.
func fileError(code int, rel string, stderr *bound.Buffer) error {
	msg := strings.TrimSpace(stderr.String())
	cause := fmt.Errorf("file operation exited with %d: %s", code, msg)
	e := func(c, format string, args ...any) error {
		return &Error{Code: c, Message: fmt.Sprintf(format, args...), Err: cause}
	}
	switch code {
	case fileproto.ExitOutside:
		return e(CodeInvalidPath, "path %q resolves outside the working dir", rel)
	case fileproto.ExitNotFound:
		return e(CodeFileNotFound, "no such file: %s", rel)
	case fileproto.ExitIsDir:
		return e(CodeInvalidPath, "path %q is a directory", rel)
	case fileproto.ExitNotDir:
		return e(CodeInvalidPath, "path %q is not a directory", rel)
	case fileproto.ExitNotRegular:
		return e(CodeInvalidPath, "path %q is not a regular file: a FIFO, socket or device cannot be downloaded", rel)
	case fileproto.ExitDenied:
		return e(CodeInvalidPath, "path %q is not accessible to the context's user", rel)
	case fileproto.ExitNoWorkDir:
		return e(CodeFileNotFound, "the context's working dir no longer exists")
	case fileproto.ExitExists:
		return e(CodeInvalidPath, "path %q is in the way: it exists and cannot be replaced, or lies in what would move there", rel)
	}
	return cause
}

// WriteFile writes what body holds to the file at p, relative to the
// context's working dir, making its parent directories, and returns the
// file's description. The file appears whole or not at all: body goes to a
// temporary file that replaces the target once body is read to its end.
// An error reading body is returned wrapped in a CodeInvalid error.
// Errors: CodeNotFound, CodeContextDead, CodeInvalidPath, CodeFileNotFound,
// CodeInvalid, CodeRuntimeUnavailable. A file it replaces keeps its mode;
// a new one gets 0644.
func (m *Manager) WriteFile(ctx context.Context, id, p string, body io.Reader) (FileInfo, error) {
	return m.writeFile(ctx, id, p, body, "")
}

// WriteFileMode is WriteFile, giving the file mode, a permission mode
// (0o7777 at most, else CodeInvalid).
func (m *Manager) WriteFileMode(ctx context.Context, id, p string, body io.Reader, mode uint32) (FileInfo, error) {
	if mode > 0o7777 {
		return FileInfo{}, Errorf(CodeInvalid, "mode %o is not a permission mode", mode)
	}
	return m.writeFile(ctx, id, p, body, fmt.Sprintf("%04o", mode))
}

// writeFile is WriteFile, with the octal mode the file gets: "" keeps that
// of the file it replaces.
func (m *Manager) writeFile(ctx context.Context, id, p string, body io.Reader, mode string) (FileInfo, error) {
	rel, err := cleanPath(p)
	if err != nil {
		return FileInfo{}, err
	}
	if rel == "." {
		return FileInfo{}, Errorf(CodeInvalidPath, "path %q is the working dir, not a file", p)
	}
	s, err := m.running(id)
	if err != nil {
		return FileInfo{}, err
	}
	defer s.done()
	workDir := s.workDir

	in := &countingReader{r: body}
	out, stderr := bound.NewBuffer(64<<10), bound.NewBuffer(64<<10)
	code, err := m.rt.Exec(ctx, s.inst, ExecSpec{Cmd: fileproto.Command(fileproto.OpWrite, workDir, rel), User: ContextUser, Stdin: in, Stdout: out, Stderr: stderr})
	tmp, written, parseErr := fileproto.ParseWrite(out.String())
	abort := func() {
		if tmp != "" {
			m.removeTemp(ctx, s, workDir, tmp)
		}
	}
	switch {
	case in.err != nil:
		abort()
		return FileInfo{}, &Error{Code: CodeInvalid, Message: "could not read the upload", Err: in.err}
	case err != nil:
		abort()
		return FileInfo{}, err
	case code == fileproto.ExitWriteFailed:
		msg := fmt.Sprintf("could not write %q: the context's disk is full, or the file is larger than a context may write", rel)
		if strings.Contains(stderr.String(), "No space left") {
			msg = fmt.Sprintf("could not write %q: the context's disk is full", rel)
		}
		return FileInfo{}, &Error{Code: CodeNoSpace, Message: msg, Err: errors.New(stderr.String())}
	case code != 0:
		abort()
		return FileInfo{}, fileError(code, rel, stderr)
	}
	if parseErr == nil && written != in.n {
		parseErr = fmt.Errorf("%d bytes read, %d written", in.n, written)
	}
	if parseErr != nil {
		abort()
		return FileInfo{}, fmt.Errorf("write %s in %s: %w", rel, id, parseErr)
	}

	out, stderr = bound.NewBuffer(64<<10), bound.NewBuffer(64<<10)
	code, err = m.rt.Exec(ctx, s.inst, ExecSpec{Cmd: fileproto.Command(fileproto.OpCommit, workDir, rel, tmp, mode), User: ContextUser, Stdout: out, Stderr: stderr})
	switch {
	case err != nil:
		abort()
		return FileInfo{}, err
	case code != 0:
		// The target may have changed since the write: into a link
		// out of the working dir, say.
		abort()
		return FileInfo{}, fileError(code, rel, stderr)
	}
	return describe(out.String(), rel)
}

// removeTemp removes an upload's temporary file, even when ctx has ended.
func (m *Manager) removeTemp(ctx context.Context, s *target, workDir, tmp string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if _, err := m.rt.Exec(ctx, s.inst, ExecSpec{Cmd: fileproto.Command(fileproto.OpAbort, workDir, ".", tmp), User: ContextUser}); err != nil {
		m.log.Warn("could not remove an upload's temporary file", "id", s.id, "file", tmp, "error", err)
	}
}

// OpenFile opens the file at p, relative to the context's working dir, and
// returns its description and a reader of its bytes. They stream from the
// container as the reader is read; the caller must close it. The reader
// gives exactly Size bytes, or an error. Errors: CodeNotFound,
// CodeContextDead, CodeInvalidPath (also for a directory, and for anything
// else that is not a regular file), CodeFileNotFound,
// CodeRuntimeUnavailable.
func (m *Manager) OpenFile(ctx context.Context, id, p string) (FileInfo, io.ReadCloser, error) {
	rel, err := cleanPath(p)
	if err != nil {
		return FileInfo{}, nil, err
	}
	s, err := m.running(id)
	if err != nil {
		return FileInfo{}, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	header := make(chan string, 1)
	out := &bound.HeadWriter{W: pw, Max: 4096, OnHead: func(h []byte) { header <- string(h) }}
	stderr := bound.NewBuffer(64 << 10)
	done := make(chan struct{})
	var execErr error
	go func() {
		defer close(done)
		defer s.done()
		code, err := m.rt.Exec(ctx, s.inst, ExecSpec{Cmd: fileproto.Command(fileproto.OpRead, s.workDir, rel), User: ContextUser, Stdout: out, Stderr: stderr})
		_, seen := out.Head()
		switch {
		case err != nil:
		case code != 0:
			err = fileError(code, rel, stderr)
		case !seen:
			err = fmt.Errorf("read %s in %s: no description before the data", rel, id)
		}
		execErr = err
		pw.CloseWithError(err)
	}()
	r := &execReader{pr: pr, cancel: cancel, done: done}
	var h string
	select {
	case h = <-header:
	case <-done:
		select {
		case h = <-header:
		default:
			r.Close()
			return FileInfo{}, nil, execErr
		}
	}
	info, err := describe(h, rel)
	if err != nil {
		r.Close()
		return FileInfo{}, nil, err
	}
	return info, r, nil
}

// execReader reads the output of an exec through a pipe; Close stops the
// exec and waits for it.
type execReader struct {
	pr     *io.PipeReader
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *execReader) Read(p []byte) (int, error) { return r.pr.Read(p) }

func (r *execReader) Close() error {
	r.cancel() // first: Exec kills a process whose reader is gone
	r.pr.Close()
	<-r.done
	return nil
}

// Bounds of a directory's listing: its bytes, and its entries.
const (
	maxListing     = 64 << 20
	maxListEntries = 100_000
)

// maxListDepth bounds how deep ListTree descends.
const maxListDepth = 32

// ListFiles lists the directory dir, relative to the context's working
// dir ("" is the working dir itself), sorted by name. It does not descend
// into subdirectories; symlinks are described by what they point to.
// Errors: CodeNotFound, CodeContextDead, CodeInvalidPath (also for a file),
// CodeFileNotFound, CodeInvalid (for more than 100,000 entries, or a
// listing over 64 MiB), CodeRuntimeUnavailable.
func (m *Manager) ListFiles(ctx context.Context, id, dir string) ([]FileInfo, error) {
	return m.ListTree(ctx, id, dir, 1)
}

// ListTree is ListFiles, descending depth levels: 1 lists dir alone, 2
// also its subdirectories, and so on, sorted by path. Symlinks are not
// entered. Errors: those of ListFiles, and CodeInvalid for a depth out of
// 1 to 32.
func (m *Manager) ListTree(ctx context.Context, id, dir string, depth int) ([]FileInfo, error) {
	if depth < 1 || depth > maxListDepth {
		return nil, Errorf(CodeInvalid, "depth %d is not between 1 and %d", depth, maxListDepth)
	}
	rel, err := cleanPath(dir)
	if err != nil {
		return nil, err
	}
	s, err := m.running(id)
	if err != nil {
		return nil, err
	}
	defer s.done()
	out, stderr := bound.NewBuffer(maxListing), bound.NewBuffer(64<<10)
	cmd := fileproto.Command(fileproto.OpList, s.workDir, rel, strconv.Itoa(depth), strconv.Itoa(maxListEntries+1))
	code, err := m.rt.Exec(ctx, s.inst, ExecSpec{Cmd: cmd, User: ContextUser, Stdout: out, Stderr: stderr})
	switch {
	case err != nil:
		return nil, err
	case code != 0:
		return nil, fileError(code, rel, stderr)
	case out.Truncated():
		// Too much to list, as too many entries is: long names, not a fault.
		return nil, Errorf(CodeInvalid, "the listing of %s at depth %d is over %d MiB: list a subdirectory, or less deep", dir, depth, maxListing>>20)
	}
	entries, err := fileproto.ParseList(out.String())
	if err != nil {
		return nil, fmt.Errorf("list %s in %s: %w", rel, id, err)
	}
	if len(entries) > maxListEntries {
		return nil, Errorf(CodeInvalid, "%s holds more than %d entries at depth %d: list a subdirectory, or less deep", dir, maxListEntries, depth)
	}
	files := []FileInfo{}
	for _, e := range entries {
		files = append(files, fileInfo(path.Join(rel, e.Name), e.Info))
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

// StatFile describes the file or directory at p, relative to the
// context's working dir; a symlink by what it points to. Errors:
// CodeNotFound, CodeContextDead, CodeInvalidPath, CodeFileNotFound,
// CodeRuntimeUnavailable.
func (m *Manager) StatFile(ctx context.Context, id, p string) (FileInfo, error) {
	rel, err := cleanPath(p)
	if err != nil {
		return FileInfo{}, err
	}
	out, code, stderr, err := m.fileOp(ctx, id, fileproto.OpStat, rel)
	if err == nil && code != 0 {
		err = fileError(code, rel, stderr)
	}
	if err != nil {
		return FileInfo{}, err
	}
	return describe(out, rel)
}

// MakeDir makes the directory p, relative to the context's working dir,
// with mode, and describes it. With parents, it makes p's missing parents
// too, and a directory at p already is no failure, as with mkdir -p.
// Errors: CodeNotFound, CodeContextDead, CodeInvalid (a mode past 0o7777),
// CodeInvalidPath (also for something at p), CodeFileNotFound (p's parent
// is missing, without parents), CodeRuntimeUnavailable.
func (m *Manager) MakeDir(ctx context.Context, id, p string, mode uint32, parents bool) (FileInfo, error) {
	if mode > 0o7777 {
		return FileInfo{}, Errorf(CodeInvalid, "mode %o is not a permission mode", mode)
	}
	rel, err := cleanPath(p)
	if err != nil {
		return FileInfo{}, err
	}
	flag := "0"
	if parents {
		flag = "1"
	}
	out, code, stderr, err := m.fileOp(ctx, id, fileproto.OpMkdir, rel, fmt.Sprintf("%04o", mode), flag)
	switch {
	case err != nil:
		return FileInfo{}, err
	case code == fileproto.ExitNotFound:
		return FileInfo{}, Errorf(CodeFileNotFound, "the parent of %s does not exist; make it first, or ask for parents", rel)
	case code != 0:
		return FileInfo{}, fileError(code, rel, stderr)
	}
	return describe(out, rel)
}

// MoveFile renames the file or directory at src to dst, both relative to
// the context's working dir, making dst's missing parents, and describes
// it there. A file at dst is replaced; a directory there is not, nor is
// anything by a directory. A symlink is moved itself. Errors: CodeNotFound,
// CodeContextDead, CodeInvalidPath (also for something in the way at dst),
// CodeFileNotFound, CodeRuntimeUnavailable.
func (m *Manager) MoveFile(ctx context.Context, id, src, dst string) (FileInfo, error) {
	from, err := cleanPath(src)
	if err != nil {
		return FileInfo{}, err
	}
	to, err := cleanPath(dst)
	if err != nil {
		return FileInfo{}, err
	}
	if from == "." || to == "." {
		return FileInfo{}, Errorf(CodeInvalidPath, "the working dir cannot be moved, nor anything put in its place")
	}
	out, code, stderr, err := m.fileOp(ctx, id, fileproto.OpMove, from, to)
	switch {
	case err != nil:
		return FileInfo{}, err
	case code == fileproto.ExitNotFound:
		return FileInfo{}, fileError(code, from, stderr)
	case code == fileproto.ExitOutside || code == fileproto.ExitDenied:
		return FileInfo{}, fileError(code, from+" or "+to, stderr)
	case code != 0:
		return FileInfo{}, fileError(code, to, stderr)
	}
	return describe(out, to)
}

// fileOp runs op of the file protocol with args in the context's
// container, and returns what it printed, its exit code and its stderr.
func (m *Manager) fileOp(ctx context.Context, id string, op fileproto.Op, args ...string) (string, int, *bound.Buffer, error) {
	s, err := m.running(id)
	if err != nil {
		return "", 0, nil, err
	}
	defer s.done()
	out, stderr := bound.NewBuffer(64<<10), bound.NewBuffer(64<<10)
	code, err := m.rt.Exec(ctx, s.inst, ExecSpec{Cmd: fileproto.Command(op, s.workDir, args...), User: ContextUser, Stdout: out, Stderr: stderr})
	if err == nil && out.Truncated() {
		err = fmt.Errorf("%s in %s: more output than %d bytes", op, id, 64<<10)
	}
	return out.String(), code, stderr, err
}

// DeleteFile removes the file at p, relative to the context's working dir;
// a directory goes with everything in it. A symlink is removed itself, not
// what it points to. Errors: CodeNotFound, CodeContextDead,
// CodeInvalidPath, CodeFileNotFound, CodeRuntimeUnavailable.
func (m *Manager) DeleteFile(ctx context.Context, id, p string) error {
	rel, err := cleanPath(p)
	if err != nil {
		return err
	}
	if rel == "." {
		return Errorf(CodeInvalidPath, "path %q is the working dir, which cannot be deleted", p)
	}
	s, err := m.running(id)
	if err != nil {
		return err
	}
	defer s.done()
	stderr := bound.NewBuffer(64 << 10)
	code, err := m.rt.Exec(ctx, s.inst, ExecSpec{Cmd: fileproto.Command(fileproto.OpDelete, s.workDir, rel), User: ContextUser, Stderr: stderr})
	switch {
	case err != nil:
		return err
	case code != 0:
		return fileError(code, rel, stderr)
	}
	return nil
}

// describe reads the file protocol's description of the file at rel.
func describe(s, rel string) (FileInfo, error) {
	info, err := fileproto.ParseInfo(s)
	if err != nil {
		return FileInfo{}, fmt.Errorf("describe %s: %w", rel, err)
	}
	return fileInfo(rel, info), nil
}

func fileInfo(rel string, i fileproto.Info) FileInfo {
	return FileInfo{Name: path.Base(rel), Path: rel, Size: i.Size, Mode: i.Mode, ModTime: i.ModTime, IsDir: i.IsDir, Regular: i.Regular}
}

// countingReader counts the bytes read through it and keeps the first
// error other than io.EOF, so that a failed upload can be told from a
// process that stopped reading.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

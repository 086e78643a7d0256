// Package fileproto is the protocol by which the daemon works on files in a
// context's container: protocol.sh, a shell script run there as the
// context's user, its exit codes, and the parsing of what it prints. The
// script travels with every exec rather than living in the images, so it
// works with any image, unchanged.
package fileproto

import (
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

//go:embed protocol.sh
var script string

// Op is an operation of the script. protocol.sh says what each takes and
// prints.
type Op string

// The operations.
const (
	OpRead   Op = "read"   // PATH
	OpWrite  Op = "write"  // PATH, with the bytes on stdin
	OpCommit Op = "commit" // PATH TMP [MODE]
	OpAbort  Op = "abort"  // PATH TMP; PATH is not used
	OpList   Op = "list"   // PATH DEPTH LIMIT
	OpStat   Op = "stat"   // PATH
	OpMkdir  Op = "mkdir"  // PATH MODE PARENTS
	OpMove   Op = "move"   // PATH DEST
	OpDelete Op = "delete" // PATH
	OpRun    Op = "run"    // PATH CMD [ARG...]
	// The processes of the container; their PATH is not used.
	OpProcesses Op = "processes" // PATH LIMIT
	OpKill      Op = "kill"      // PATH PID START
)

// Exit codes of the script, besides 0 and 1 (any other failure).
const (
	ExitOutside     = 10 // PATH resolves outside the working dir
	ExitNotFound    = 11 // PATH does not exist
	ExitIsDir       = 12 // PATH is a directory, or commit could not replace it
	ExitNotDir      = 13 // PATH, or a parent of it, is not a directory
	ExitDenied      = 14 // PATH is not accessible to the user
	ExitNoWorkDir   = 15 // the working dir does not exist
	ExitWriteFailed = 16 // write: the disk is full, or the file too large
	ExitNotRegular  = 17 // read: PATH is a FIFO, socket or device
	ExitExists      = 18 // mkdir, move: PATH or DEST is in the way
)

// Command returns the command line that runs op in the working dir
// workDir, an absolute path in the container, with args: the PATH,
// relative to workDir and free of .. segments, then what op takes after it.
func Command(op Op, workDir string, args ...string) []string {
	return append([]string{"sh", "-c", script, "sandboxd", string(op), workDir}, args...)
}

// IsCommand reports whether cmdline, the arguments of a process joined by
// spaces, is a command line Command made.
func IsCommand(cmdline string) bool {
	first, _, _ := strings.Cut(script, "\n")
	return strings.HasPrefix(cmdline, "sh -c "+first+"\n")
}

// Info is a file's description, of what a symlink points to.
type Info struct {
	IsDir   bool
	Regular bool // a regular file: not a directory, FIFO, socket or device
	Size    int64
	// Mode holds the Unix permission bits, setuid, setgid and sticky
	// included: 0o644.
	Mode    uint32
	ModTime time.Time
}

// ParseInfo reads a description as the script prints it: find's
// %y/%s/%m/%T@, type, size, octal mode and mtime.
func ParseInfo(s string) (Info, error) {
	f := strings.Split(s, "/")
	if len(f) != 4 {
		return Info{}, fmt.Errorf("bad description %q", s)
	}
	size, err1 := strconv.ParseInt(f[1], 10, 64)
	mode, err2 := strconv.ParseUint(f[2], 8, 32)
	secs, frac, _ := strings.Cut(f[3], ".")
	sec, err3 := strconv.ParseInt(secs, 10, 64)
	var nsec int64
	if frac != "" {
		frac = (frac + "000000000")[:9]
		nsec, _ = strconv.ParseInt(frac, 10, 64)
	}
	if err := errors.Join(err1, err2, err3); err != nil {
		return Info{}, fmt.Errorf("bad description %q: %w", s, err)
	}
	return Info{
		IsDir:   f[0] == "d",
		Regular: f[0] == "f",
		Size:    size,
		Mode:    uint32(mode),
		ModTime: time.Unix(sec, nsec).UTC(),
	}, nil
}

// Entry is a file in a directory's listing.
type Entry struct {
	// Name is the entry's path below the listed directory: a name, or
	// names joined by / for an entry of a subdirectory.
	Name string
	Info
}

// ParseList reads what OpList printed: a record for each entry, its
// description, a /, and its path, ended by a NUL. The entries come in the
// order the directories hold them, each directory's before what is in it.
func ParseList(out string) ([]Entry, error) {
	var list []Entry
	for _, rec := range strings.Split(out, "\x00") {
		if rec == "" {
			continue
		}
		// The description has four fields; the path is the rest.
		f := strings.SplitN(rec, "/", 5)
		if len(f) != 5 || f[4] == "" {
			return nil, fmt.Errorf("bad entry %q", rec)
		}
		info, err := ParseInfo(strings.Join(f[:4], "/"))
		if err != nil {
			return nil, err
		}
		list = append(list, Entry{Name: f[4], Info: info})
	}
	return list, nil
}

// ParseWrite reads what OpWrite printed: the temporary file it made, ""
// when it made none, and the count of bytes it wrote there. err is set
// when the count is missing: tmp is still to be removed then.
func ParseWrite(out string) (tmp string, written int64, err error) {
	tmp, rest, ok := strings.Cut(out, "\x00")
	if !ok {
		return "", 0, fmt.Errorf("no temporary file named in %q", out)
	}
	written, err = strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
	if err != nil {
		return tmp, 0, fmt.Errorf("bad count of bytes written %q", rest)
	}
	return tmp, written, nil
}

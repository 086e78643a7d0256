package oneshot

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sandboxd/sandboxd/internal/bound"
)

// runner.sh runs each request in a runner's container, and cleans up after
// it; runner.py and runner.js are the programs it runs for Python and
// Node.js; spawner.py is the runner's first process. They travel with
// every container and run, so any image with sh, coreutils, Python and
// the interpreter works unchanged.
var (
	//go:embed runner.sh
	driver string
	//go:embed spawner.py
	spawner string
	//go:embed runner.py
	pythonRunner string
	//go:embed runner.js
	nodeRunner string
)

// interpreters are the programs that run a request's code, by the name of
// the language whose image they run in.
var interpreters = map[string][]string{
	"python":     {"python3", "-I", "-S", "-B", "-c", pythonRunner},
	"javascript": {"node", "-e", nodeRunner},
}

// prestarted are the programs a runner's spawner starts ahead of each run,
// to wait for it: see spawner.py.
var prestarted = map[string][]string{
	"python": append(slices.Clone(interpreters["python"]), "prestart"),
}

// Exit codes of timeout(1) as the driver reports them.
const (
	exitTimedOut = 124
	exitKilled   = 128 + 9
)

// command is the command that runs program under the driver. seed says
// whether the driver seeds the writable places, which the spawner does
// when it runs the command.
func command(timeout time.Duration, l Limits, seed bool, program []string) []string {
	return driverCommand(strconv.FormatFloat(timeout.Seconds(), 'f', 3, 64), l, seed, program)
}

// afterCommand is the command that reports and cleans up after a program
// the spawner started ahead and ran.
func afterCommand(l Limits) []string { return driverCommand("after", l, false, nil) }

func driverCommand(limit string, l Limits, seed bool, program []string) []string {
	return append([]string{"sh", "-c", driver, "sandboxd-runner", limit,
		strconv.Itoa(l.MaxArtifacts), strconv.Itoa(l.MaxArtifactBytes), strconv.Itoa(l.MaxResultBytes),
		map[bool]string{true: "1", false: "0"}[seed]}, program...)
}

// report is what the driver says after the program: how it ended, what it
// left, and whether the container is clean again.
type report struct {
	hasRC     bool
	exitCode  int
	elapsed   time.Duration // at the resolution of /proc/uptime: 10ms
	program   []byte        // what the program wrote to fd 3: a line of JSON
	artifacts []Artifact
	skipped   []string // artifacts not sent: over the count or the size
	dirty     []string // what the cleanup found left
	modes     string   // of the writable places, to compare with a fresh runner's; "" when the spawner does
}

// parseReport reads the driver's whole report, from the line after the
// first nonce line: the answer, up to the second nonce line, then what
// the cleanup found, up to the third, which must end it.
func parseReport(b []byte, nonce string) (report, error) {
	r, b, err := parseAnswer(b, nonce)
	if err != nil {
		return r, err
	}
	if b, err = parseLines(b, nonce, &r); err != nil {
		return r, err
	}
	if len(b) > 0 {
		return r, errors.New("output after the report's end")
	}
	return r, nil
}

// parseAnswer reads the report's answer, up to the second nonce line, and
// returns what follows it.
func parseAnswer(b []byte, nonce string) (report, []byte, error) {
	var r report
	b, err := parseLines(b, nonce, &r)
	if err == nil && !r.hasRC {
		err = errors.New("the report is incomplete")
	}
	return r, b, err
}

// parseLines reads report lines into r up to the nonce line, and returns
// what follows it.
func parseLines(b []byte, nonce string, r *report) ([]byte, error) {
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return nil, errors.New("the report has no end")
		}
		line := string(b[:i])
		b = b[i+1:]
		if line == nonce {
			return b, nil
		}
		word, rest, _ := strings.Cut(line, " ")
		var err error
		switch word {
		case "rc":
			r.exitCode, err = strconv.Atoi(rest)
			r.hasRC = true
		case "elapsed_cs":
			var cs int
			cs, err = strconv.Atoi(rest)
			r.elapsed = time.Duration(cs) * 10 * time.Millisecond
		case "program":
			// One line, of what the program wrote to fd 3.
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				return nil, errors.New("the program's report has no end")
			}
			r.program, b = b[:i:i], b[i+1:]
		case "artifact":
			sizeText, name, _ := strings.Cut(rest, " ")
			size, serr := strconv.Atoi(sizeText)
			if serr != nil || size < 0 || size > len(b) {
				return nil, fmt.Errorf("bad %s size %q", word, sizeText)
			}
			r.artifacts = append(r.artifacts, Artifact{Name: name, MIMEType: mimeType(name), Size: size, Content: b[:size:size]})
			b = b[size:]
		case "dropped", "too_large":
			r.skipped = append(r.skipped, line)
		case "dirty":
			r.dirty = append(r.dirty, rest)
		case "modes":
			r.modes = rest
		default:
			return nil, fmt.Errorf("unknown report line %q", bound.Prefix(line, 80))
		}
		if err != nil {
			return nil, fmt.Errorf("report line %q: %w", bound.Prefix(line, 80), err)
		}
	}
}

// mimeTypes are the kinds of file sent back as artifacts, as RAGFlow's
// executor manager allows them.
var mimeTypes = map[string]string{
	".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml",
	".pdf": "application/pdf", ".csv": "text/csv", ".json": "application/json", ".html": "text/html",
}

func mimeType(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		if t, ok := mimeTypes[strings.ToLower(name[i:])]; ok {
			return t
		}
	}
	return "application/octet-stream"
}

// splitter passes the program's stdout on to user and keeps what follows
// the first marker, the driver's report, up to max bytes. A marker split
// across writes is found all the same. When answered is set, it is closed
// once the report holds the answer, up to the marker's second line: answer
// then holds it, and is not written again.
type splitter struct {
	marker   []byte
	user     io.Writer
	max      int
	pending  []byte // the end of what came, which may start a marker
	report   []byte
	found    bool
	tooBig   bool
	answered chan struct{}
	answer   []byte
	scanned  int // of report, for the answer's end
}

func (s *splitter) Write(p []byte) (int, error) {
	n := len(p)
	if !s.found {
		buf := append(s.pending, p...)
		if i := bytes.Index(buf, s.marker); i >= 0 {
			s.user.Write(buf[:i])
			s.found = true
			p = buf[i+len(s.marker):]
		} else {
			keep := min(len(buf), len(s.marker)-1)
			s.user.Write(buf[:len(buf)-keep])
			s.pending = append([]byte(nil), buf[len(buf)-keep:]...)
			return n, nil
		}
	}
	if len(s.report)+len(p) > s.max {
		s.tooBig = true
		return n, nil
	}
	s.report = append(s.report, p...)
	if s.answered != nil && s.answer == nil {
		// The answer starts with the rc line, so its end is a whole line.
		end := append([]byte{'\n'}, s.marker...)
		from := max(0, s.scanned-len(end)+1)
		if i := bytes.Index(s.report[from:], end); i >= 0 {
			k := from + i + len(end)
			s.answer = s.report[:k:k]
			close(s.answered)
		}
		s.scanned = len(s.report)
	}
	return n, nil
}

// finish passes on what was held back when no report came.
func (s *splitter) finish() {
	if !s.found && len(s.pending) > 0 {
		s.user.Write(s.pending)
		s.pending = nil
	}
}

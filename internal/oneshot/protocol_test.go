package oneshot

import (
	"io"
	"strings"
	"testing"
)

const testNonce = "sandboxd-0123"

func TestParseReport(t *testing.T) {
	answer := "rc 0\nelapsed_cs 12\nprogram\n{\"result\":1}\nartifact 3 a b.png\nPNGdropped c.csv\ntoo_large 99 d.csv\n" + testNonce + "\n"
	good := answer + "modes 755:1 1777:0\n" + testNonce + "\n"
	a, rest, err := parseAnswer([]byte(answer), testNonce)
	if err != nil || len(rest) != 0 || a.exitCode != 0 || len(a.artifacts) != 1 || len(a.skipped) != 2 {
		t.Errorf("answer: %+v %q %v", a, rest, err)
	}
	r, err := parseReport([]byte(good), testNonce)
	if err != nil {
		t.Fatal(err)
	}
	if r.exitCode != 0 || r.elapsed.Milliseconds() != 120 || string(r.program) != `{"result":1}` || len(r.artifacts) != 1 ||
		r.artifacts[0].Name != "a b.png" || string(r.artifacts[0].Content) != "PNG" || r.artifacts[0].MIMEType != "image/png" ||
		len(r.skipped) != 2 || r.modes != "755:1 1777:0" || len(r.dirty) != 0 {
		t.Errorf("%+v", r)
	}
	r, err = parseReport([]byte("rc 1\n"+testNonce+"\ndirty process 42\nmodes x\n"+testNonce+"\n"), testNonce)
	if err != nil || len(r.dirty) != 1 || r.dirty[0] != "process 42" {
		t.Errorf("%+v %v", r, err)
	}
	end := testNonce + "\nmodes x\n" + testNonce + "\n"
	for name, bad := range map[string]string{
		"no end":             "rc 0\n" + testNonce + "\nmodes x\n",
		"no cleanup":         "rc 0\n" + testNonce + "\n",
		"after the end":      "rc 0\n" + end + "more",
		"no rc":              end,
		"unknown line":       "rc 0\nhello\n" + end,
		"size past the end":  "rc 0\nartifact 999 a.png\n" + end,
		"program cut short":  "rc 0\nprogram\n{",
		"negative size":      "rc 0\nartifact -1 a.png\n" + end,
		"rc not a number":    "rc x\n" + end,
		"another nonce only": "rc 0\nmodes x\nsandboxd-other\n",
	} {
		if _, err := parseReport([]byte(bad), testNonce); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// The marker is found wherever the writes split it; what precedes it is
// the program's, whole; what follows, the report, up to its bound.
func TestSplitter(t *testing.T) {
	stream := "out\nput" + testNonce + "\nrc 0\n"
	for cut := range len(stream) + 1 {
		var user strings.Builder
		s := &splitter{marker: []byte(testNonce + "\n"), user: &user, max: 100}
		s.Write([]byte(stream[:cut]))
		s.Write([]byte(stream[cut:]))
		s.finish()
		if !s.found || user.String() != "out\nput" || string(s.report) != "rc 0\n" {
			t.Errorf("cut at %d: found %v, user %q, report %q", cut, s.found, user.String(), s.report)
		}
	}
	var user strings.Builder
	s := &splitter{marker: []byte(testNonce + "\n"), user: &user, max: 4}
	s.Write([]byte("sandboxd-01 no marker"))
	s.finish()
	if s.found || user.String() != "sandboxd-01 no marker" {
		t.Errorf("no marker: found %v, user %q", s.found, user.String())
	}
	s = &splitter{marker: []byte(testNonce + "\n"), user: &user, max: 4}
	s.Write([]byte(testNonce + "\n12345"))
	if !s.tooBig {
		t.Error("a report past its bound is kept")
	}
}

// The answer is the report up to the marker's second line, wherever the
// writes split it; what follows is kept in the report, not the answer.
func TestSplitterAnswer(t *testing.T) {
	stream := "out" + testNonce + "\nrc 0\nartifact 2 a.png\n\n" + testNonce + "\nmodes x\n" + testNonce + "\n"
	for cut := range len(stream) + 1 {
		var user strings.Builder
		s := &splitter{marker: []byte(testNonce + "\n"), user: &user, max: 1000, answered: make(chan struct{})}
		s.Write([]byte(stream[:cut]))
		s.Write([]byte(stream[cut:]))
		select {
		case <-s.answered:
		default:
			t.Fatalf("cut at %d: no answer", cut)
		}
		if string(s.answer) != "rc 0\nartifact 2 a.png\n\n"+testNonce+"\n" || string(s.report) != stream[len("out"+testNonce+"\n"):] {
			t.Errorf("cut at %d: answer %q, report %q", cut, s.answer, s.report)
		}
	}
	s := &splitter{marker: []byte(testNonce + "\n"), user: io.Discard, max: 1000, answered: make(chan struct{})}
	s.Write([]byte(testNonce + "\nrc 0\n" + testNonce))
	select {
	case <-s.answered:
		t.Error("an answer without its end line")
	default:
	}
}

func TestCommandQuotesNothing(t *testing.T) {
	cmd := command(1500_000_000, Limits{MaxArtifacts: 10, MaxArtifactBytes: 5, MaxResultBytes: 7}, true, []string{"python3", "-c", "x"})
	if got := strings.Join(cmd[3:], " "); got != "sandboxd-runner 1.500 10 5 7 1 python3 -c x" {
		t.Errorf("%q", got)
	}
}

package bound

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

// marker is spelled out rather than taken from the code, so that a change
// to the marker, which clients see, shows up here.
const marker = "\n[output truncated]\n"

func TestMarker(t *testing.T) {
	if Marker != marker {
		t.Errorf("Marker = %q, want %q", Marker, marker)
	}
}

func TestPrefix(t *testing.T) {
	for _, tt := range []struct {
		name, s string
		n       int
		want    string
	}{
		{"shorter than n", "abc", 5, "abc"},
		{"exactly n", "abc", 3, "abc"},
		{"longer than n", "abcdef", 4, "abcd"},
		{"n is zero", "abc", 0, ""},
		{"n is negative", "abc", -1, ""},
		{"empty", "", 3, ""},
		{"two-byte rune straddling n", "abé", 3, "ab"},
		{"two-byte rune ending at n", "abé!", 4, "abé"},
		{"three-byte rune straddling n", "a€", 3, "a"},
		{"four-byte rune straddling n", "a😀b", 4, "a"},
		{"four-byte rune ending at n", "a😀b", 5, "a😀"},
		{"rune at the start straddling n", "😀", 2, ""},
		{"an invalid byte counts as one", "a\xffb", 2, "a\xff"},
		{"on invalid UTF-8 it may keep less, never more", "a\x80\x80\x80", 3, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Prefix(tt.s, tt.n); got != tt.want {
				t.Errorf("Prefix(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
			}
		})
	}
}

// step is one call on a Budget: Reserve of n, or Fit of s.
type step struct {
	reserve    bool
	n          int
	s          string
	want       string // what Fit kept
	ok, cutNow bool   // ok: what Reserve returned
}

func TestBudget(t *testing.T) {
	fit := func(s, want string, cutNow bool) step { return step{s: s, want: want, cutNow: cutNow} }
	reserve := func(n int, ok, cutNow bool) step { return step{reserve: true, n: n, ok: ok, cutNow: cutNow} }
	for _, tt := range []struct {
		name     string
		limit    int
		steps    []step
		exceeded bool
	}{
		{"under the limit", 10, []step{fit("abc", "abc", false), reserve(3, true, false), fit("de", "de", false)}, false},
		{"exactly at the limit", 6, []step{fit("abc", "abc", false), reserve(3, true, false), fit("", "", false)}, false},
		{"text one byte past", 3, []step{fit("abc", "abc", false), fit("d", "", true), fit("e", "", false)}, true},
		{"text cut in the middle", 4, []step{fit("ab", "ab", false), fit("cdef", "cd", true)}, true},
		{"text cut on a rune boundary", 4, []step{fit("ab", "ab", false), fit("c😀", "c", true)}, true},
		{"reserve past the room", 5, []step{fit("abc", "abc", false), reserve(3, false, true), reserve(1, false, false), fit("d", "", false)}, true},
		{"reserve of the exact room", 5, []step{reserve(2, true, false), reserve(3, true, false), reserve(0, true, false), reserve(1, false, true)}, true},
		{"nothing after a cut fits, however small", 4, []step{fit("abcde", "abcd", true), reserve(0, false, false), fit("x", "", false)}, true},
		{"zero is no limit", 0, []step{fit(strings.Repeat("x", 1<<16), strings.Repeat("x", 1<<16), false), reserve(1<<30, true, false)}, false},
		{"negative is no limit", -1, []step{reserve(1<<30, true, false), fit("abc", "abc", false)}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBudget(tt.limit)
			for i, st := range tt.steps {
				if !st.reserve {
					kept, cutNow := b.Fit(st.s)
					if kept != st.want || cutNow != st.cutNow {
						t.Errorf("step %d: Fit(%q) = %q, %v; want %q, %v", i, st.s, kept, cutNow, st.want, st.cutNow)
					}
					continue
				}
				ok, cutNow := b.Reserve(st.n)
				if ok != st.ok || cutNow != st.cutNow {
					t.Errorf("step %d: Reserve(%d) = %v, %v; want %v, %v", i, st.n, ok, cutNow, st.ok, st.cutNow)
				}
			}
			if b.Exceeded() != tt.exceeded {
				t.Errorf("Exceeded() = %v, want %v", b.Exceeded(), tt.exceeded)
			}
		})
	}
}

func TestText(t *testing.T) {
	for _, tt := range []struct {
		name    string
		limit   int
		writes  []string
		want    string
		emitted string // the pieces emitted, joined by |
		cut     bool
	}{
		{name: "runes split across writes are kept whole", writes: []string{"a\xc3", "\xa9b\xe2\x82", "\xac", "\xf0\x9f", "\x98\x80"},
			want: "aéb€😀", emitted: "a|éb|€|😀"},
		{name: "a rune split over three writes", writes: []string{"\xf0", "\x9f", "\x98", "\x80!"}, want: "😀!", emitted: "😀!"},
		{name: "invalid bytes become U+FFFD, one for each", writes: []string{"bad \xff\xfe ok \xe2\x82A", "end \xe2"},
			want: "bad \uFFFD\uFFFD ok \uFFFD\uFFFDAend \uFFFD", emitted: "bad \uFFFD\uFFFD ok \uFFFD\uFFFDA|end |\uFFFD"},
		{name: "a split rune broken by the next write", writes: []string{"\xe2\x82", "A"}, want: "\uFFFD\uFFFDA", emitted: "\uFFFD\uFFFDA"},
		{name: "an incomplete rune at the end", writes: []string{"ok\xf0\x9f\x98"}, want: "ok\uFFFD\uFFFD\uFFFD", emitted: "ok|\uFFFD\uFFFD\uFFFD"},
		{name: "the cap cuts on a rune boundary and marks it", limit: 6, writes: []string{"abcé", "éé", "more"},
			want: "abcé" + marker, emitted: "abcé|" + marker, cut: true},
		{name: "exactly at the cap", limit: 5, writes: []string{"abc", "é"}, want: "abcé", emitted: "abc|é"},
		{name: "one byte past the cap", limit: 5, writes: []string{"abcde", "f"}, want: "abcde" + marker, emitted: "abcde|" + marker, cut: true},
		{name: "a rune split across writes straddling the cap", limit: 3, writes: []string{"ab\xc3", "\xa9"},
			want: "ab" + marker, emitted: "ab|" + marker, cut: true},
		{name: "an invalid byte past the cap", limit: 3, writes: []string{"abc\xff"}, want: "abc" + marker, emitted: "abc" + marker, cut: true},
		{name: "an incomplete rune at the end past the cap", limit: 3, writes: []string{"abc\xe2"}, want: "abc" + marker, emitted: "abc|" + marker, cut: true},
		{name: "nothing fits", limit: 2, writes: []string{"😀"}, want: marker, emitted: marker, cut: true},
		{name: "empty writes", limit: 2, writes: []string{"", "", ""}, want: "", emitted: ""},
		{name: "zero keeps all", limit: 0, writes: []string{strings.Repeat("x", 1<<16), "é"}, want: strings.Repeat("x", 1<<16) + "é",
			emitted: strings.Repeat("x", 1<<16) + "|é"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var emitted []string
			c := NewText(NewBudget(tt.limit), func(s string) { emitted = append(emitted, s) })
			for _, w := range tt.writes {
				if n, err := c.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			c.Close()
			if c.String() != tt.want || c.Truncated() != tt.cut {
				t.Errorf("text %q, truncated %v; want %q, %v", c.String(), c.Truncated(), tt.want, tt.cut)
			}
			if got := strings.Join(emitted, "|"); got != tt.emitted {
				t.Errorf("emitted %q, want %q", got, tt.emitted)
			}
		})
	}
}

// Texts that share a budget are cut together: the first to go past it is
// marked, and nothing more is kept of either.
func TestTextSharedBudget(t *testing.T) {
	b := NewBudget(4)
	out, errs := NewText(b, nil), NewText(b, nil)
	if got := out.Add("ab"); got != "ab" {
		t.Errorf("Add = %q", got)
	}
	if got := errs.Add("cdefg"); got != "cd"+marker {
		t.Errorf("Add past the cap = %q", got)
	}
	out.Add("h")
	errs.Write([]byte("i"))
	if out.String() != "ab" || errs.String() != "cd"+marker || out.Truncated() || !errs.Truncated() || !b.Exceeded() {
		t.Errorf("out %q (cut %v), errs %q (cut %v), exceeded %v", out.String(), out.Truncated(), errs.String(), errs.Truncated(), b.Exceeded())
	}

	// A whole-or-nothing output past the cap is marked on a text.
	b = NewBudget(4)
	var emitted []string
	out = NewText(b, func(s string) { emitted = append(emitted, s) })
	out.Add("ab")
	if ok, cutNow := b.Reserve(3); ok || !cutNow {
		t.Fatalf("Reserve = %v, %v", ok, cutNow)
	}
	out.Mark()
	if out.String() != "ab"+marker || strings.Join(emitted, "|") != "ab|"+marker {
		t.Errorf("text %q, emitted %q", out.String(), emitted)
	}
}

// Whatever the bytes, and however they are split into writes, the text is
// valid UTF-8, within the cap and its marker, and the same as when written
// whole.
func FuzzText(f *testing.F) {
	f.Add([]byte("aé€😀"), 3, 4)
	f.Add([]byte("bad \xff\xfe ok \xe2\x82A end \xe2"), 5, 0)
	f.Add([]byte("\xf0\x9f\x98"), 1, 2)
	f.Add([]byte("abcdef"), 6, 0)
	f.Fuzz(func(t *testing.T, data []byte, split, limit int) {
		limit %= 64
		whole := NewText(NewBudget(limit), nil)
		whole.Write(data)
		whole.Close()

		var emitted strings.Builder
		parts := NewText(NewBudget(limit), func(s string) { emitted.WriteString(s) })
		split = max(split, 0)
		for p := data; len(p) > 0; {
			n := min(split%7+1, len(p))
			parts.Write(p[:n])
			p = p[n:]
		}
		parts.Close()

		got := parts.String()
		if got != whole.String() || emitted.String() != got {
			t.Fatalf("written in parts %q, emitted %q; written whole %q", got, emitted.String(), whole.String())
		}
		if !utf8.ValidString(got) {
			t.Errorf("%q is not valid UTF-8", got)
		}
		if limit > 0 && len(got) > limit+len(marker) {
			t.Errorf("kept %d bytes over a cap of %d", len(got), limit)
		}
		if parts.Truncated() != strings.HasSuffix(got, marker) && !bytes.HasSuffix(data, []byte(marker)) {
			t.Errorf("truncated %v, text %q", parts.Truncated(), got)
		}
	})
}

func TestBuffer(t *testing.T) {
	for _, tt := range []struct {
		name   string
		size   int
		writes []string
		want   string
		cut    bool
	}{
		{"under the size", 8, []string{"ab", "cd"}, "abcd", false},
		{"exactly the size", 4, []string{"ab", "cd"}, "abcd", false},
		{"one byte past", 4, []string{"abcd", "e"}, "abcd", true},
		{"past in one write", 4, []string{"abcdefg"}, "abcd", true},
		{"past across writes", 4, []string{"abc", "def", "g"}, "abcd", true},
		{"bytes are kept as they are, runes split", 4, []string{"abc\xe2\x82\xac\xff"}, "abc\xe2", true},
		{"size zero keeps nothing", 0, []string{"a"}, "", true},
		{"empty writes", 0, []string{"", ""}, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBuffer(tt.size)
			for _, w := range tt.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if b.String() != tt.want || b.Truncated() != tt.cut {
				t.Errorf("kept %q, truncated %v; want %q, %v", b.String(), b.Truncated(), tt.want, tt.cut)
			}
		})
	}
}

func TestHeadWriter(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		head   string
		seen   bool
		rest   string
		fails  bool
	}{
		{name: "one write", writes: []string{"123\x00data"}, head: "123", seen: true, rest: "data"},
		{name: "head split", writes: []string{"1", "23", "\x00", "da", "ta\x00x"}, head: "123", seen: true, rest: "data\x00x"},
		{name: "empty head", writes: []string{"\x00data"}, head: "", seen: true, rest: "data"},
		{name: "no NUL yet", writes: []string{"12"}, head: "12"},
		{name: "head at the limit", writes: []string{"1234", "\x00"}, head: "1234", seen: true},
		{name: "head too long", writes: []string{"123", "45"}, fails: true},
		{name: "head too long with NUL", writes: []string{"12345\x00"}, fails: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rest bytes.Buffer
			var called []string
			h := &HeadWriter{W: &rest, Max: 4, OnHead: func(b []byte) { called = append(called, string(b)) }}
			var err error
			for _, w := range tt.writes {
				var n int
				if n, err = h.Write([]byte(w)); err != nil {
					break
				}
				if n != len(w) {
					t.Fatalf("wrote %d of %q", n, w)
				}
			}
			if (err != nil) != tt.fails {
				t.Fatalf("error %v, want failure %v", err, tt.fails)
			}
			if tt.fails {
				return
			}
			head, seen := h.Head()
			if string(head) != tt.head || seen != tt.seen || rest.String() != tt.rest {
				t.Errorf("head %q seen %v rest %q, want %q %v %q", head, seen, rest.String(), tt.head, tt.seen, tt.rest)
			}
			if tt.seen != (len(called) == 1) || tt.seen && called[0] != tt.head {
				t.Errorf("OnHead called with %q", called)
			}
		})
	}
}

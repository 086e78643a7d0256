package contexts

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
)

// javascript's aliases find it, and only exact names do.
func TestLanguageAliases(t *testing.T) {
	m := &Manager{cfg: Config{Languages: []Language{Python("py"), JavaScript("js")}}}
	for name, want := range map[string]string{"": "python", "python": "python", "javascript": "javascript", "nodejs": "javascript", "js": "javascript"} {
		if l, ok := m.language(name); !ok || l.Name != want {
			t.Errorf("language(%q) = %q, %v; want %q", name, l.Name, ok, want)
		}
	}
	for _, name := range []string{"JS", "node", "ecmascript"} {
		if l, ok := m.language(name); ok {
			t.Errorf("language(%q) = %q", name, l.Name)
		}
	}
}

// JavaScript's set-up and per-execution env, run by a real node, take any
// value as it is and leave nothing behind.
func TestJavaScriptSnippets(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node on PATH")
	}
	lang := JavaScript("img")
	dir := filepath.Join(t.TempDir(), `it's "a" dir`, "sub")
	odd := "quote ' \" back \\ `tick` ${x} line\nsep \u2028 end </script>"
	override := map[string]string{"ODD": "again " + odd, "NEW": "1"}
	set, undo := lang.Override(override)
	code := lang.Prepare(dir, map[string]string{"ODD": odd, "KEEP": "k"}) + "\n" +
		"const before = Object.keys(globalThis).length;\n" +
		set + "\nconst during = { ODD: process.env.ODD, NEW: process.env.NEW };\n" +
		undo + "\n" +
		"console.log(JSON.stringify({ cwd: process.cwd(), ODD: process.env.ODD, KEEP: process.env.KEEP, NEW: process.env.NEW ?? null, during, leftovers: Object.keys(globalThis).length - before, saved: Symbol.for('sandboxd.savedEnv') in process }))"
	out, err := exec.Command(node, "-e", code).CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	var got struct {
		Cwd, ODD, KEEP string
		NEW            *string
		During         map[string]string
		Leftovers      int
		Saved          bool
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got.Cwd != dir || got.ODD != odd || got.KEEP != "k" || got.NEW != nil {
		t.Errorf("after set-up and undo: %+v", got)
	}
	if got.During["ODD"] != override["ODD"] || got.During["NEW"] != "1" {
		t.Errorf("during the execution: %+v", got.During)
	}
	if got.Leftovers != 0 || got.Saved {
		t.Errorf("left behind %d globals; saved env still on process: %v", got.Leftovers, got.Saved)
	}
}

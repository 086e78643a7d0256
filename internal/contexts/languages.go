package contexts

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Language is a kernel sandboxd can start.
type Language struct {
	Name       string // as clients name it: python
	Image      string // the container image with its kernel
	KernelName string // the kernelspec inside the image: python3
	// Aliases are other names clients may use for it; contexts report Name.
	Aliases []string
	// Prepare returns code that makes dir (below /workspace or /tmp) the
	// kernel's working directory and adds env to its environment. It runs
	// silently after the kernel starts and after every restart, as a request
	// of its own, so user code keeps its line numbers.
	Prepare func(dir string, env map[string]string) string
	// Override returns code that sets env for one execution, and code that
	// undoes it. Nil when the language cannot.
	Override func(env map[string]string) (set, undo string)
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ValidateEnv checks that every name can be an environment variable, and
// no value holds a NUL byte. Errors: CodeInvalid.
func ValidateEnv(env map[string]string) error {
	for k, v := range env {
		if !envName.MatchString(k) {
			return Errorf(CodeInvalid, "env name %q must be letters, digits and underscores, not starting with a digit", k)
		}
		for _, c := range v {
			if c == 0 {
				return Errorf(CodeInvalid, "env value of %q contains a NUL byte", k)
			}
		}
	}
	return nil
}

// pythonLiteral returns a Python expression for v. Going through base64
// keeps any value, quotes and newlines included, from being read as code.
func pythonLiteral(v any) string {
	b, _ := json.Marshal(v)
	return fmt.Sprintf("__import__('json').loads(__import__('base64').b64decode('%s'))", base64.StdEncoding.EncodeToString(b))
}

// Python is the language of the python-kernel image. Its snippets are
// single expressions ending in ";", so they leave no names behind and
// display nothing.
func Python(image string) Language {
	return Language{
		Name:       "python",
		Image:      image,
		KernelName: "python3",
		Prepare: func(dir string, env map[string]string) string {
			if env == nil {
				env = map[string]string{} // not JSON null
			}
			return fmt.Sprintf("(lambda os, dir, env: (os.makedirs(dir, exist_ok=True), os.chdir(dir), os.environ.update(env)))(__import__('os'), %s, %s);",
				pythonLiteral(dir), pythonLiteral(env))
		},
		Override: func(env map[string]string) (string, string) {
			set := fmt.Sprintf("(lambda os, env: (setattr(os, '_sandboxd_saved', {k: os.environ.get(k) for k in env}), os.environ.update(env)))(__import__('os'), %s);", pythonLiteral(env))
			undo := "(lambda os: [os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v) for k, v in os.__dict__.pop('_sandboxd_saved', {}).items()])(__import__('os'));"
			return set, undo
		},
	}
}

// R is the language of the r-kernel image (IRkernel). Go's quoted strings
// are valid R string literals: the same escapes, \x, \u and \U included.
func R(image string) Language {
	return Language{
		Name:       "r",
		Image:      image,
		KernelName: "ir",
		Prepare: func(dir string, env map[string]string) string {
			var b strings.Builder
			fmt.Fprintf(&b, "invisible(local({dir.create(%s, recursive = TRUE, showWarnings = FALSE); setwd(%s)", strconv.Quote(dir), strconv.Quote(dir))
			for _, k := range sortedKeys(env) {
				fmt.Fprintf(&b, "; Sys.setenv(%s = %s)", strconv.Quote(k), strconv.Quote(env[k]))
			}
			b.WriteString("}))")
			return b.String()
		},
	}
}

// Bash is the language of the bash-kernel image. Its kernel replays silent
// cells, such as this set-up, in every new shell it starts.
func Bash(image string) Language {
	return Language{
		Name:       "bash",
		Image:      image,
		KernelName: "bash",
		Prepare: func(dir string, env map[string]string) string {
			var b strings.Builder
			fmt.Fprintf(&b, "mkdir -p -- %s && cd -- %s", shellQuote(dir), shellQuote(dir))
			for _, k := range sortedKeys(env) {
				fmt.Fprintf(&b, " && export %s=%s", k, shellQuote(env[k]))
			}
			return b.String()
		},
	}
}

// JavaScript is the language of the javascript-kernel image (Node.js).
// Its snippets are single expressions under void, so they leave no names
// behind and have no value to display. JSON is a JavaScript literal.
func JavaScript(image string) Language {
	return Language{
		Name:       "javascript",
		Image:      image,
		KernelName: "javascript",
		Aliases:    []string{"nodejs", "js"},
		Prepare: func(dir string, env map[string]string) string {
			if env == nil {
				env = map[string]string{} // not JSON null
			}
			return fmt.Sprintf("void ((fs, dir, env) => { fs.mkdirSync(dir, { recursive: true }); process.chdir(dir); Object.assign(process.env, env); })(require('fs'), %s, %s);",
				jsonLiteral(dir), jsonLiteral(env))
		},
		// The values the env replaces wait under a symbol on process, where
		// the kernel also looks for them: a node it starts anew gets the env
		// without them.
		Override: func(env map[string]string) (string, string) {
			set := fmt.Sprintf("void ((env, key) => { const saved = {}; for (const k of Object.keys(env)) saved[k] = process.env[k]; process[key] = saved; Object.assign(process.env, env); })(%s, Symbol.for('sandboxd.savedEnv'));", jsonLiteral(env))
			undo := "void ((key) => { for (const [k, v] of Object.entries(process[key] || {})) { if (v === undefined) delete process.env[k]; else process.env[k] = v; } delete process[key]; })(Symbol.for('sandboxd.savedEnv'));"
			return set, undo
		},
	}
}

func jsonLiteral(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// shellQuote quotes s for bash: inside single quotes nothing is special
// but the single quote itself.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// languageNames lists the names of the languages contexts can be made for.
func (m *Manager) languageNames() string {
	names := make([]string, len(m.cfg.Languages))
	for i, l := range m.cfg.Languages {
		names[i] = l.Name
	}
	return strings.Join(names, ", ")
}

// LanguageStatus is a language and whether its kernel image is installed.
type LanguageStatus struct {
	Name      string
	Image     string
	Installed bool
}

// Languages lists the languages contexts can be made for, the default
// first, and whether each one's image is in the engine. Errors:
// CodeRuntimeUnavailable.
func (m *Manager) Languages(ctx context.Context) ([]LanguageStatus, error) {
	all := make([]LanguageStatus, len(m.cfg.Languages))
	for i, l := range m.cfg.Languages {
		ok, err := m.rt.HasImage(ctx, l.Image)
		if err != nil {
			return nil, err
		}
		all[i] = LanguageStatus{Name: l.Name, Image: l.Image, Installed: ok}
	}
	return all, nil
}

func (m *Manager) language(name string) (Language, bool) {
	if name == "" && len(m.cfg.Languages) > 0 {
		return m.cfg.Languages[0], true
	}
	for _, l := range m.cfg.Languages {
		if l.Name == name || slices.Contains(l.Aliases, name) {
			return l, true
		}
	}
	return Language{}, false
}

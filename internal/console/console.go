// Package console serves sandboxd's web console: a single page, embedded
// in the binary, that shows contexts, their history and their files
// through the public API. Its files hold no data, so they are served
// without credentials; the page asks for the key and sends it with every
// API call it makes.
package console

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// Prefix is the path the console is served under.
const Prefix = "/ui/"

//go:embed static
var static embed.FS

// csp lets the page run its own script alone. Outputs are never markup of
// the page: HTML ones go into sandboxed srcdoc frames (which inherit this
// policy, so they run no script and load nothing from elsewhere either),
// images are data: URLs. Inline styles are allowed for those frames' sake
// (a pandas table brings its own); no markup of an output ever reaches the
// page itself, so they cannot be used against it.
const csp = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data: blob:; connect-src 'self'; frame-src 'self'; " +
	"form-action 'none'; base-uri 'none'; frame-ancestors 'none'"

// Handler serves the console's files at Prefix.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix(Prefix, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		// A new binary may bring new files under the same names.
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// Public reports whether path is one of the console's, which need no
// credentials: the page, its script and style, and the redirect to them.
func Public(path string) bool {
	return path == "/" || path == "/ui" || strings.HasPrefix(path, Prefix)
}

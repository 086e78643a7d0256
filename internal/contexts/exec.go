package contexts

import "io"

// ExecSpec is a process to run in a context's container with Runtime.Exec.
type ExecSpec struct {
	Cmd []string
	// Env is added to the container's own environment, as NAME=value.
	Env []string
	// Dir is the process's working directory; "" is the image's.
	Dir string
	// User is uid:gid; "" is the image's user.
	User string
	// Stdin, when not nil, is copied to the process's standard input, which
	// is closed at its end.
	Stdin io.Reader
	// Stdout and Stderr receive the process's output; nil discards it.
	Stdout, Stderr io.Writer
}

// ContextUser is the uid:gid every process of a context runs as, as the
// images' USER says: files and commands run with the kernel's rights, so
// what one writes the other can read.
const ContextUser = "61000:61000"

// ProxyEnv points programs at the HTTP proxy at url: both spellings, since
// tools differ in which one they read.
func ProxyEnv(url string) map[string]string {
	return map[string]string{
		"HTTP_PROXY": url, "HTTPS_PROXY": url, "http_proxy": url, "https_proxy": url,
		"NO_PROXY": "localhost,127.0.0.1", "no_proxy": "localhost,127.0.0.1",
	}
}

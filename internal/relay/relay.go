// Package relay holds the program that carries one connection to a
// context's server over the stdin and stdout of an exec in the context:
// the way in for a daemon that cannot reach the server itself. The Docker
// and Kubernetes runtimes both run it.
package relay

import _ "embed"

//go:embed relay.py
var program string

// Connected is the byte the relay writes first, once it has connected;
// what follows is the server's. A relay that cannot connect writes the
// reason to stderr and exits with 1 instead.
const Connected = '+'

// Command is the command line of a relay to target: a unix socket's path
// (it has a "/") or host:port. It needs python3 in the context's image,
// which every image has, for its Jupyter server.
func Command(target string) []string {
	return []string{"python3", "-S", "-c", program, target}
}

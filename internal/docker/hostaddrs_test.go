package docker

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/egress"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

func TestParseLocalAddrs(t *testing.T) {
	out := `Main:
  +-- 0.0.0.0/0 3 0 4
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
        +-- 192.0.2.0/30 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 4
           |-- 192.0.2.2
              /32 host LOCAL
fd000000000000000000000000000002 04 40 00 82     eth0
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
`
	var got []string
	for _, p := range parseLocalAddrs(out) {
		got = append(got, p.String())
	}
	want := []string{"127.0.0.0/8", "127.0.0.1/32", "192.0.2.2/32", "::1/128", "fd00::2/128", "fe80::fc:ff:fe00:1/128"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// The addresses read from the engine's host are this host's (tests run on
// it), and a proxy given them refuses them.
func TestLoadHostAddrs(t *testing.T) {
	testenv.RequireDocker(t)
	owner := testenv.Owner(t)
	rt, err := New(Config{Owner: owner, SocketDir: testenv.SocketDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	// A probe that a daemon of the same name left when it died.
	left := owner + "-probe"
	if out, err := exec.Command("docker", "create", "--name", left, "--label", labelProbe+"="+owner, testenv.KernelImage()).CombinedOutput(); err != nil {
		t.Fatalf("docker create: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", left).Run() })
	addrs, err := rt.LoadHostAddrs(t.Context(), testenv.KernelImage())
	if err != nil {
		t.Fatal(err)
	}
	if exec.Command("docker", "inspect", left).Run() == nil {
		t.Error("a probe left by an earlier run is still there")
	}
	if out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label="+labelProbe+"="+owner).Output(); len(out) > 0 {
		t.Errorf("probe containers left: %s", out)
	}
	t.Logf("engine host addresses: %v", addrs)
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var public netip.Addr // an address of this host that is not loopback
	for _, a := range ifaddrs {
		ip, _ := netip.AddrFromSlice(a.(*net.IPNet).IP)
		ip = ip.Unmap()
		if ip.IsLinkLocalUnicast() {
			continue // veths of containers that come and go meanwhile
		}
		if !slices.ContainsFunc(addrs, func(p netip.Prefix) bool { return p.Contains(ip) }) {
			t.Errorf("%s, an address of this host, is not among the engine host's", ip)
		}
		if ip.Is4() && !ip.IsLoopback() {
			public = ip
		}
	}
	if !slices.Equal(rt.HostAddrs(), addrs) {
		t.Errorf("HostAddrs() = %v, want what was loaded", rt.HostAddrs())
	}
	if !public.IsValid() {
		t.Fatal("this host has no IPv4 address but loopback")
	}

	// A proxy that would allow anything refuses them once told.
	ln, err := net.Listen("tcp", net.JoinHostPort(public.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			fmt.Fprint(c, "host secret")
			c.Close()
		}
	}()
	p := &egress.Proxy{
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
		Allow:  func(netip.Addr) bool { return true },
		Deny:   rt.HostAddrs,
		Ports:  []uint16{uint16(ln.Addr().(*net.TCPAddr).Port)},
	}
	sock := filepath.Join(testenv.SocketDir(t), "egress.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go p.Serve(l, "ctx-test")
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %[1]s\r\n\r\n", ln.Addr())
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if want := fmt.Sprintf("%s is in %s/32, which is denied", public, public); resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), want) {
		t.Errorf("CONNECT %s: %d %q, want 403 %q", ln.Addr(), resp.StatusCode, b, want)
	}
}

package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestAllowed(t *testing.T) {
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"127.0.0.1", false},
		{"::1", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false},
		{"fe80::1", false},
		{"fe80::1%eth0", false},
		{"fc00::1", false},
		{"fd00:ec2::254", false},
		{"100.64.0.1", false},
		{"100.100.100.200", false},
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"::", false},
		{"224.0.0.1", false},
		{"ff02::1", false},
		{"255.255.255.255", false},
		{"240.0.0.1", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:169.254.169.254", false},
		{"::ffff:10.0.0.1", false},
		{"64:ff9b::7f00:1", false},
		{"::7f00:1", false},
		{"2002:7f00:1::", false},
		{"1.1.1.1", true},
		{"151.101.2.132", true},
		{"::ffff:1.1.1.1", true},
		{"64:ff9b::101:101", true},
		{"2606:4700:4700::1111", true},
	} {
		if got := Allowed(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("Allowed(%s) = %v, want %v", tc.ip, got, tc.want)
		}
	}
}

// serveProxy serves p on a unix socket in a temp dir. It returns the
// socket's path, the listener, and where Serve's result arrives.
func serveProxy(t *testing.T, p *Proxy) (string, net.Listener, <-chan error) {
	t.Helper()
	p.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	sock := filepath.Join(t.TempDir(), "egress.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- p.Serve(l, "ctx-test")
		close(done) // for the cleanup, when the test took the result
	}()
	t.Cleanup(func() {
		l.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after the listener closed")
		}
	})
	return sock, l, done
}

// proxyClient returns a client that sends every request through the proxy
// on sock.
func proxyClient(t *testing.T, sock string) *http.Client {
	tr := &http.Transport{
		Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: "proxy"}),
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// get fetches rawURL through c and returns the status and body.
func get(t *testing.T, c *http.Client, rawURL string) (int, string) {
	t.Helper()
	resp, err := c.Get(rawURL)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", rawURL, err)
	}
	return resp.StatusCode, string(b)
}

// connect sends CONNECT target on a new connection to sock and reads the
// answer. On a 200 the connection is the tunnel: read it through br.
func connect(t *testing.T, sock, target string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	req := &http.Request{Method: http.MethodConnect}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	return c, br, resp
}

func upstream(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from upstream %s", r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func loopbackToo(ip netip.Addr) bool { return ip.IsLoopback() || Allowed(ip) }

// portOf returns the port of a listener's address, for Proxy.Ports.
func portOf(t *testing.T, l net.Listener) []uint16 {
	t.Helper()
	return []uint16{uint16(l.Addr().(*net.TCPAddr).Port)}
}

func TestRefusesLoopback(t *testing.T) {
	srv := upstream(t)
	sock, _, _ := serveProxy(t, &Proxy{Ports: portOf(t, srv.Listener)})
	host := srv.Listener.Addr().String()
	want := "sandboxd: egress to 127.0.0.1 refused: 127.0.0.1 is not a public address"

	status, body := get(t, proxyClient(t, sock), srv.URL+"/x")
	if status != http.StatusForbidden || !strings.Contains(body, want) {
		t.Errorf("GET: %d %q, want 403 %q", status, body, want)
	}

	_, _, resp := connect(t, sock, host)
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), want) {
		t.Errorf("CONNECT: %d %q, want 403 %q", resp.StatusCode, b, want)
	}
}

func TestAllowedLoopback(t *testing.T) {
	srv := upstream(t)
	sock, _, _ := serveProxy(t, &Proxy{Allow: loopbackToo, Ports: portOf(t, srv.Listener)})

	status, body := get(t, proxyClient(t, sock), srv.URL+"/plain")
	if status != http.StatusOK || body != "hello from upstream /plain" {
		t.Errorf("GET: %d %q", status, body)
	}

	c, br, resp := connect(t, sock, srv.Listener.Addr().String())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	fmt.Fprintf(c, "GET /tunnel HTTP/1.1\r\nHost: upstream\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil || string(b) != "hello from upstream /tunnel" {
		t.Errorf("through the tunnel: %q, %v", b, err)
	}
}

func TestRefusesMetadata(t *testing.T) {
	sock, _, _ := serveProxy(t, &Proxy{})
	start := time.Now()
	// Nothing answers there: a dial would time out or fail, not give 403.
	status, body := get(t, proxyClient(t, sock), "http://169.254.169.254/latest/meta-data/")
	if status != http.StatusForbidden || !strings.Contains(body, "169.254.169.254 is not a public address") {
		t.Errorf("got %d %q, want 403", status, body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refusal took %v", d)
	}
}

func TestRefusesNameOfLoopback(t *testing.T) {
	srv := upstream(t)
	sock, _, _ := serveProxy(t, &Proxy{Ports: portOf(t, srv.Listener)})
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	status, body := get(t, proxyClient(t, sock), fmt.Sprintf("http://localhost:%d/", port))
	if status != http.StatusForbidden || !strings.Contains(body, "egress to localhost refused") {
		t.Errorf("got %d %q, want 403", status, body)
	}
}

func TestBadRequests(t *testing.T) {
	sock, _, _ := serveProxy(t, &Proxy{})
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: proxy\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("GET /: %s, want 400", resp.Status)
	}

	_, _, resp = connect(t, sock, "no-port")
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("CONNECT without a port: %s, want 400", resp.Status)
	}
	_, _, resp = connect(t, sock, "nosuchhost.invalid:443")
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("CONNECT to an unknown name: %s, want 502", resp.Status)
	}
}

func TestTunnelHalfClose(t *testing.T) {
	// An upstream that reads to EOF, then answers and closes.
	ul, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	go func() {
		c, err := ul.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		fmt.Fprintf(c, "got %q", b)
	}()

	sock, _, _ := serveProxy(t, &Proxy{Allow: loopbackToo, Ports: portOf(t, ul)})
	c, br, resp := connect(t, sock, ul.Addr().String())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	io.WriteString(c, "hello")
	if err := c.(*net.UnixConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(br) // ends when the upstream closes
	if err != nil || string(b) != `got "hello"` {
		t.Errorf("read %q, %v", b, err)
	}
}

func TestCloseCutsTunnels(t *testing.T) {
	// An upstream that accepts and then says nothing, ever.
	ul, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	go func() {
		for {
			c, err := ul.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()

	sock, l, done := serveProxy(t, &Proxy{Allow: loopbackToo, Ports: portOf(t, ul)})
	c, br, resp := connect(t, sock, ul.Addr().String())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %s", resp.Status)
	}

	l.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v, want nil", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Serve did not return after the listener closed")
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = br.ReadByte()
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("tunnel still open after Serve returned")
	} else if err == nil {
		t.Errorf("read a byte from a silent upstream")
	}
}

// Only the ports of Proxy.Ports (80 and 443 unless set) are dialed; others
// are refused before any lookup or connection.
func TestRefusesPorts(t *testing.T) {
	var dialed atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dialed.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	host := srv.Listener.Addr().String()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	sock, _, _ := serveProxy(t, &Proxy{Allow: loopbackToo})
	want := fmt.Sprintf("port %d is not allowed (allowed: 80, 443)", port)

	status, body := get(t, proxyClient(t, sock), srv.URL+"/x")
	if status != http.StatusForbidden || !strings.Contains(body, want) {
		t.Errorf("GET: %d %q, want 403 %q", status, body, want)
	}
	_, _, resp := connect(t, sock, host)
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), want) {
		t.Errorf("CONNECT: %d %q, want 403 %q", resp.StatusCode, b, want)
	}
	for _, target := range []string{"nosuchhost.invalid:25", "deb.debian.org:22", "[2606:4700:4700::1111]:25"} {
		_, _, resp = connect(t, sock, target)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("CONNECT %s: %s, want 403 before resolving", target, resp.Status)
		}
	}
	if n := dialed.Load(); n != 0 {
		t.Errorf("the upstream got %d connections", n)
	}

	// Allowed once listed.
	sock, _, _ = serveProxy(t, &Proxy{Allow: loopbackToo, Ports: []uint16{443, uint16(port)}})
	if status, body := get(t, proxyClient(t, sock), srv.URL+"/x"); status != http.StatusOK {
		t.Errorf("GET with the port allowed: %d %q", status, body)
	}
}

// Deny refuses addresses that Allow would let through: the engine host's.
func TestDeny(t *testing.T) {
	srv := upstream(t)
	deny := func() []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} }
	sock, _, _ := serveProxy(t, &Proxy{Allow: loopbackToo, Deny: deny, Ports: portOf(t, srv.Listener)})
	want := "egress to 127.0.0.1 refused: 127.0.0.1 is in 127.0.0.1/32, which is denied"
	if status, body := get(t, proxyClient(t, sock), srv.URL+"/x"); status != http.StatusForbidden || !strings.Contains(body, want) {
		t.Errorf("GET: %d %q, want 403 %q", status, body, want)
	}
	_, _, resp := connect(t, sock, srv.Listener.Addr().String())
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("CONNECT: %s, want 403", resp.Status)
	}
}

// A context holds at most MaxConns upstream connections; past that it gets
// 429 at once, and a slot comes back when a tunnel ends.
func TestMaxConns(t *testing.T) {
	// An upstream that holds each connection until the client ends it.
	ul, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	go func() {
		for {
			c, err := ul.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	const max = 4
	sock, _, _ := serveProxy(t, &Proxy{Allow: loopbackToo, Ports: portOf(t, ul), MaxConns: max})
	target := ul.Addr().String()
	var tunnels []net.Conn
	for i := range max {
		c, _, resp := connect(t, sock, target)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("tunnel %d: %s", i+1, resp.Status)
		}
		c.SetDeadline(time.Time{})
		tunnels = append(tunnels, c)
	}
	_, _, resp := connect(t, sock, target)
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(b), "has 4 connections open") {
		t.Errorf("tunnel %d: %d %q, want 429", max+1, resp.StatusCode, b)
	}
	if status, body := get(t, proxyClient(t, sock), "http://"+target+"/"); status != http.StatusTooManyRequests {
		t.Errorf("GET past the limit: %d %q, want 429", status, body)
	}

	tunnels[0].Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, _, resp := connect(t, sock, target)
		if resp.StatusCode == http.StatusOK {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot after a tunnel closed: %s", resp.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Idle kept-alive upstream connections hold slots, but give them up when
// a new connection needs one.
func TestMaxConnsDropsIdle(t *testing.T) {
	srv := upstream(t)
	sock, _, _ := serveProxy(t, &Proxy{Allow: loopbackToo, Ports: portOf(t, srv.Listener), MaxConns: 1})
	client := proxyClient(t, sock)
	if status, body := get(t, client, srv.URL+"/a"); status != http.StatusOK {
		t.Fatalf("GET: %d %q", status, body)
	}
	// The proxy keeps its connection to srv: the tunnel must take it.
	c, br, resp := connect(t, sock, srv.Listener.Addr().String())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT with only an idle connection open: %s", resp.Status)
	}
	fmt.Fprintf(c, "GET /tunnel HTTP/1.1\r\nHost: upstream\r\nConnection: close\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("through the tunnel: %v %v", resp, err)
	}
}

func TestInternet(t *testing.T) {
	c, err := net.DialTimeout("tcp", "deb.debian.org:80", 5*time.Second)
	if err != nil {
		t.Skipf("no direct route to deb.debian.org:80 from here: %v", err)
	}
	c.Close()
	sock, _, _ := serveProxy(t, &Proxy{})
	client := proxyClient(t, sock)
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	status, body := get(t, client, "http://deb.debian.org/debian/")
	if status >= 400 {
		t.Errorf("got %d %q, want 2xx or 3xx", status, body)
	}
}

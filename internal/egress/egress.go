// Package egress is the filtering HTTP proxy through which a context that
// may use the network reaches the public internet, and nothing else: not
// the host's own ports, private networks, nor cloud metadata services. The
// daemon serves one on a unix socket per context; containers still run
// with --network none.
package egress

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// refused are ranges that are not the public internet and that the
// net/netip predicates do not already cover. Documentation (TEST-NET) and
// benchmark (198.18/15) ranges are left allowed: they route nowhere public,
// but sandboxes and fake-IP DNS setups hand them out for real hosts.
var refused = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // CGNAT; also Alibaba's metadata
	netip.MustParsePrefix("192.0.0.0/24"),  // IETF assignments; also Oracle's metadata
	netip.MustParsePrefix("240.0.0.0/4"),   // reserved, and broadcast
	netip.MustParsePrefix("2001::/32"),     // Teredo: tunnels to any IPv4
	netip.MustParsePrefix("2002::/16"),     // 6to4: likewise
}

var (
	globalV6 = netip.MustParsePrefix("2000::/3")
	nat64    = netip.MustParsePrefix("64:ff9b::/96")
)

// Allowed reports whether a context may connect to ip: only public unicast
// addresses. It refuses loopback, unspecified, private (RFC 1918,
// fc00::/7), link-local (169.254/16, where cloud metadata lives, and
// fe80::/10), CGNAT, multicast, broadcast, 0/8, reserved space and IPv6
// outside 2000::/3. IPv4-mapped addresses are judged as the IPv4 they
// carry, and NAT64 ones (64:ff9b::/96) as the IPv4 they translate to.
func Allowed(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("") // a zone makes Prefix.Contains false
	if nat64.Contains(ip) {
		b := ip.As16()
		return Allowed(netip.AddrFrom4([4]byte(b[12:])))
	}
	if !ip.IsGlobalUnicast() || ip.IsPrivate() || (ip.Is6() && !globalV6.Contains(ip)) {
		return false
	}
	for _, p := range refused {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// defaultAllow is Allowed, less this host's own addresses: a public one is
// Allowed, yet dialing it reaches the daemon's host. They are listed at
// each check, so they are never stale; when they cannot be, it refuses.
func defaultAllow(ip netip.Addr) bool {
	if !Allowed(ip) {
		return false
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip.AsSlice()) {
			return false
		}
	}
	return true
}

// DefaultPorts are the ports a context may reach when Proxy.Ports is nil:
// HTTP and HTTPS, not mail, SSH or databases.
var DefaultPorts = []uint16{80, 443}

// DefaultMaxConns is Proxy.MaxConns when it is 0.
const DefaultMaxConns = 64

// Proxy serves HTTP proxy requests: CONNECT host:port (tunnels, for HTTPS) and
// absolute-form requests (GET http://host/path) for plain HTTP.
type Proxy struct {
	Logger *slog.Logger // nil: slog.Default()
	// Allow decides which resolved addresses may be dialed; nil means
	// Allowed and not one of this host's own interface addresses.
	Allow func(netip.Addr) bool
	// Deny returns more ranges to refuse, whatever Allow says: the Docker
	// engine's host's own addresses, which are not this process's when it
	// runs in a container. It is called at each check; nil: none.
	Deny func() []netip.Prefix
	// Ports a context may connect to; nil: DefaultPorts.
	Ports []uint16
	// MaxConns bounds a context's upstream connections (tunnels, requests
	// in flight and idle kept-alive ones); past it requests get 429 at
	// once. 0: DefaultMaxConns.
	MaxConns    int
	Resolver    *net.Resolver // nil: net.DefaultResolver
	DialTimeout time.Duration // bounds resolving and dialing together; 0: 10s
}

// egressError is a failure to reach a target, with the status and short
// message the client gets.
type egressError struct {
	status int
	msg    string
}

func (e *egressError) Error() string { return e.msg }

// fail answers a request that could not be carried out. Other errors are
// the upstream's, after the dial, and are not detailed.
func fail(w http.ResponseWriter, err error) {
	status, msg := http.StatusBadGateway, "upstream error"
	if e := (*egressError)(nil); errors.As(err, &e) {
		status, msg = e.status, e.msg
	}
	http.Error(w, "sandboxd: "+msg, status)
}

// session is one Serve call: the context's proxy and what it has open.
type session struct {
	p         Proxy // defaults filled in
	id        string
	transport *http.Transport
	rp        *httputil.ReverseProxy
	conns     chan struct{} // a slot per upstream connection, dialing or open

	mu     sync.Mutex
	closed bool           // Serve has returned: handle nothing more
	wg     sync.WaitGroup // running handlers
}

// Serve answers proxy requests arriving on l until l is closed; contextID
// names the context in logs. It returns nil when l is closed
// (net.ErrClosed), other accept errors otherwise.
func (p *Proxy) Serve(l net.Listener, contextID string) error {
	s := &session{p: *p, id: contextID}
	if s.p.Logger == nil {
		s.p.Logger = slog.Default()
	}
	if s.p.Allow == nil {
		s.p.Allow = defaultAllow
	}
	if s.p.Resolver == nil {
		s.p.Resolver = net.DefaultResolver
	}
	if s.p.DialTimeout == 0 {
		s.p.DialTimeout = 10 * time.Second
	}
	if s.p.Ports == nil {
		s.p.Ports = DefaultPorts
	}
	if s.p.MaxConns <= 0 {
		s.p.MaxConns = DefaultMaxConns
	}
	s.conns = make(chan struct{}, s.p.MaxConns)
	// Proxy stays nil: never chain through the daemon's own proxy settings.
	s.transport = &http.Transport{
		DialContext:        func(ctx context.Context, _, addr string) (net.Conn, error) { return s.dial(ctx, addr) },
		DisableCompression: true, // pass bodies through as they are
		IdleConnTimeout:    30 * time.Second,
	}
	s.rp = &httputil.ReverseProxy{
		Rewrite:      func(*httputil.ProxyRequest) {}, // Out.URL is already the absolute URL asked for
		Transport:    s.transport,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) { fail(w, err) },
	}
	// Every request's context derives from ctx, so cancelling it stops
	// dials and cuts tunnels.
	ctx, cancel := context.WithCancel(context.Background())
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute, // a client's idle keep-alive connection
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(s.p.Logger.Handler(), slog.LevelDebug),
	}
	err := srv.Serve(l)

	// The context is going: cut everything it has open, and wait.
	cancel()
	srv.Close()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.wg.Wait()
	s.transport.CloseIdleConnections()
	if errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *session) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	switch {
	case r.Method == http.MethodConnect:
		s.connect(w, r)
	case r.URL.IsAbs() && r.URL.Scheme == "http" && r.URL.Host != "":
		s.rp.ServeHTTP(w, r)
	default:
		http.Error(w, "sandboxd: not a proxy request (want CONNECT or an absolute http:// URL)", http.StatusBadRequest)
	}
}

// dial resolves hostport once, checks every address, and dials only the
// checked ones, so a name cannot be rebound between check and dial. It
// logs one line for the attempt.
func (s *session) dial(ctx context.Context, hostport string) (net.Conn, error) {
	log := s.p.Logger.With("context_id", s.id, "target", hostport)
	conn, e := s.dialChecked(ctx, hostport)
	switch {
	case e == nil:
		log.Info("egress allowed", "addr", conn.RemoteAddr().String())
		return conn, nil
	case e.status == http.StatusForbidden || e.status == http.StatusTooManyRequests:
		log.Info("egress refused", "reason", e.msg)
	default:
		log.Info("egress failed", "reason", e.msg)
	}
	return nil, e
}

func (s *session) dialChecked(ctx context.Context, hostport string) (net.Conn, *egressError) {
	host, portStr, err := net.SplitHostPort(hostport)
	port, perr := strconv.ParseUint(portStr, 10, 16)
	if err != nil || perr != nil || host == "" || port == 0 {
		return nil, &egressError{http.StatusBadRequest, fmt.Sprintf("bad target %q: want host:port", hostport)}
	}
	if !slices.Contains(s.p.Ports, uint16(port)) {
		return nil, &egressError{http.StatusForbidden, fmt.Sprintf("egress to %s refused: port %d is not allowed (allowed: %s)", hostport, port, portList(s.p.Ports))}
	}
	release, ok := s.acquire(ctx)
	if !ok {
		return nil, &egressError{http.StatusTooManyRequests, fmt.Sprintf("egress to %s refused: this context has %d connections open, the most it may", hostport, s.p.MaxConns)}
	}
	conn, e := s.dialAllowed(ctx, host, uint16(port))
	if e != nil {
		release()
		return nil, e
	}
	return &slotConn{TCPConn: conn, release: sync.OnceFunc(release)}, nil
}

// slotWait is how long a connection waits for a slot when all are taken:
// long enough for a connection whose response was just read to go back to
// the idle pool, where it can be dropped, and short enough that a context
// holding its most never queues.
const slotWait = time.Second

// acquire takes a connection slot. When none is free it drops the idle
// kept-alive connections, which hold slots, and waits up to slotWait for
// one to be given back.
func (s *session) acquire(ctx context.Context) (release func(), ok bool) {
	release = func() { <-s.conns }
	select {
	case s.conns <- struct{}{}:
		return release, true
	default:
	}
	wait := time.NewTimer(slotWait)
	defer wait.Stop()
	drop := time.NewTicker(slotWait / 20)
	defer drop.Stop()
	for {
		s.transport.CloseIdleConnections()
		select {
		case s.conns <- struct{}{}:
			return release, true
		case <-drop.C:
		case <-wait.C:
			return nil, false
		case <-ctx.Done():
			return nil, false
		}
	}
}

// slotConn is an upstream connection that gives its slot back when closed.
// It embeds *net.TCPConn so that tunnels can still shut one direction.
type slotConn struct {
	*net.TCPConn
	release func()
}

func (c *slotConn) Close() error {
	err := c.TCPConn.Close()
	c.release()
	return err
}

func portList(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ", ")
}

// denied returns the range of Deny that holds ip, if any.
func (s *session) denied(ip netip.Addr) (netip.Prefix, bool) {
	if s.p.Deny == nil {
		return netip.Prefix{}, false
	}
	for _, p := range s.p.Deny() {
		if p.Contains(ip) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// dialAllowed resolves host, checks the addresses and dials port on the
// first allowed one that answers.
func (s *session) dialAllowed(ctx context.Context, host string, port uint16) (*net.TCPConn, *egressError) {
	ctx, cancel := context.WithTimeout(ctx, s.p.DialTimeout)
	defer cancel()
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else if ips, err = s.p.Resolver.LookupNetIP(ctx, "ip", host); err != nil || len(ips) == 0 {
		return nil, &egressError{http.StatusBadGateway, fmt.Sprintf("cannot resolve %s", host)}
	}
	var allowed []netip.Addr
	why := ""
	for i, ip := range ips {
		ips[i] = ip.Unmap() // the resolver may hand back IPv4 as ::ffff:a.b.c.d
		if p, ok := s.denied(ips[i]); ok {
			why = cmp.Or(why, fmt.Sprintf("%s is in %s, which is denied (the Docker engine's host, or --egress-deny)", ips[i], p))
		} else if s.p.Allow(ips[i]) {
			allowed = append(allowed, ips[i])
		}
	}
	if len(allowed) == 0 {
		why = cmp.Or(why, fmt.Sprintf("%s is not a public address", ips[0]))
		return nil, &egressError{http.StatusForbidden, fmt.Sprintf("egress to %s refused: %s", host, why)}
	}
	var d net.Dialer
	var err error
	for _, ip := range allowed {
		var c net.Conn
		if c, err = d.DialContext(ctx, "tcp", netip.AddrPortFrom(ip, port).String()); err == nil {
			return c.(*net.TCPConn), nil
		}
	}
	hostport := net.JoinHostPort(host, strconv.Itoa(int(port)))
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return nil, &egressError{http.StatusGatewayTimeout, fmt.Sprintf("timed out connecting to %s", hostport)}
	}
	return nil, &egressError{http.StatusBadGateway, fmt.Sprintf("cannot connect to %s", hostport)}
}

// connect answers CONNECT: it dials first, so a refusal is a plain HTTP
// answer, then takes over the client's connection and tunnels.
func (s *session) connect(w http.ResponseWriter, r *http.Request) {
	up, err := s.dial(r.Context(), r.Host)
	if err != nil {
		fail(w, err)
		return
	}
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		http.Error(w, "sandboxd: cannot tunnel", http.StatusInternalServerError)
		return
	}
	// A hijacked connection is not the server's any more: cut it when
	// Serve returns, as it cuts the others.
	defer context.AfterFunc(r.Context(), func() { client.Close(); up.Close() })()
	// Write errors here show up again in the tunnel, which then ends.
	io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n")
	// Bytes the client sent after its request (a TLS hello, say) may
	// already sit in the server's buffer.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		up.Write(b)
	}
	tunnel(client, up)
}

// halfCloseIdle is how long a tunnel waits for more data in the direction
// still open after the other has ended.
const halfCloseIdle = 30 * time.Second

// tunnel copies both ways until both directions end. When one ends its
// write side is shut, so the peer sees EOF, and the other direction may
// finish what it sends; but only while it keeps sending, so a peer that
// never closes cannot hold the tunnel. Then both are closed.
func tunnel(a, b net.Conn) {
	var halfClosed atomic.Bool
	done := make(chan net.Conn, 2) // the source of a finished direction
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, idleReader{src, &halfClosed})
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
		done <- src
	}
	go pipe(b, a)
	go pipe(a, b)
	other := a
	if <-done == a {
		other = b
	}
	halfClosed.Store(true)
	other.SetReadDeadline(time.Now().Add(halfCloseIdle))
	<-done
	a.Close()
	b.Close()
}

// idleReader reads from c; once the tunnel is half closed, each read must
// come within halfCloseIdle.
type idleReader struct {
	c          net.Conn
	halfClosed *atomic.Bool
}

func (r idleReader) Read(p []byte) (int, error) {
	if r.halfClosed.Load() {
		r.c.SetReadDeadline(time.Now().Add(halfCloseIdle))
	}
	return r.c.Read(p)
}

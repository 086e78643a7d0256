package docker

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// labelProbe marks the short-lived containers that read the engine host's
// addresses, with the daemon's name: they are no context's.
const labelProbe = "sandboxd.host-probe"

// HostAddrs returns what LoadHostAddrs last read: the ranges the engine's
// host holds as its own. It suits egress.Proxy.Deny.
func (r *Runtime) HostAddrs() []netip.Prefix {
	if p := r.hostAddrs.Load(); p != nil {
		return *p
	}
	return nil
}

// LoadHostAddrs reads the local addresses of the Docker engine's host and
// keeps them for HostAddrs. A daemon in a container sees its container's
// interfaces only, while contexts must not reach the host's either: a
// container in the host's network namespace, made from image, prints the
// kernel's tables of local IPv4 routes and IPv6 addresses.
func (r *Runtime) LoadHostAddrs(ctx context.Context, image string) ([]netip.Prefix, error) {
	r.removeProbes(ctx)
	transport, err := r.Transport(ctx, image)
	if err != nil {
		return nil, err
	}
	security, err := r.securityOpts(ctx, transport)
	if err != nil {
		return nil, err
	}
	created, err := r.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			Image:      image,
			Entrypoint: []string{"cat"},
			Cmd:        []string{"/proc/net/fib_trie", "/proc/net/if_inet6"},
			User:       "65534",
			Labels:     map[string]string{labelProbe: r.cfg.Owner},
		},
		HostConfig: &container.HostConfig{
			// The runtime's default, not r.cfg.Runtime: gVisor's netstack
			// would show its own tables, not the host's.
			NetworkMode:    "host",
			ReadonlyRootfs: true,
			CapDrop:        []string{"ALL"},
			SecurityOpt:    security,
			Resources:      container.Resources{Memory: 64 << 20, PidsLimit: new(int64(16))},
		},
	})
	if err != nil {
		return nil, translate(err, "create the host address probe")
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		r.cli.ContainerRemove(rctx, created.ID, client.ContainerRemoveOptions{Force: true})
		cancel()
	}()
	if _, err := r.cli.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		return nil, translate(err, "start the host address probe")
	}
	res := r.cli.ContainerWait(ctx, created.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case <-res.Result: // cat fails without IPv6, having printed the rest
	case err := <-res.Error:
		return nil, translate(err, "wait for the host address probe")
	}
	logs, err := r.cli.ContainerLogs(ctx, created.ID, client.ContainerLogsOptions{ShowStdout: true})
	if err != nil {
		return nil, translate(err, "read the host address probe")
	}
	defer logs.Close()
	var out strings.Builder
	if _, err := stdcopy.StdCopy(&out, io.Discard, logs); err != nil {
		return nil, fmt.Errorf("read the host address probe: %w", err)
	}
	addrs := parseLocalAddrs(out.String())
	if len(addrs) == 0 {
		return nil, fmt.Errorf("the host address probe found no address in %q", out.String())
	}
	r.hostAddrs.Store(&addrs)
	return addrs, nil
}

// removeProbes removes the probes of this daemon's that a run which died
// during one left behind: only it would ever look for them.
func (r *Runtime) removeProbes(ctx context.Context) {
	res, err := r.cli.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", labelProbe+"="+r.cfg.Owner),
	})
	if err != nil {
		return // the probe's own create says what is wrong
	}
	for _, c := range res.Items {
		r.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
	}
}

// WatchHostAddrs loads the engine host's addresses, then again every
// period until Close, since the host's addresses may change (DHCP, a new
// network). A failed refresh keeps the last list.
func (r *Runtime) WatchHostAddrs(image string, every time.Duration, log *slog.Logger) error {
	load := func() error {
		lctx, cancel := context.WithTimeout(r.watching, time.Minute)
		defer cancel()
		_, err := r.LoadHostAddrs(lctx, image)
		return err
	}
	err := load()
	r.watchers.Add(1)
	go func() {
		defer r.watchers.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-r.watching.Done():
				return
			case <-t.C:
				if err := load(); err != nil {
					log.Warn("cannot refresh the Docker engine host's addresses for egress", "error", err)
				}
			}
		}
	}()
	return err
}

// parseLocalAddrs picks the host's own ranges out of /proc/net/fib_trie
// (each leaf address followed by its routes, "/32 host LOCAL" for one of
// the host's addresses) and /proc/net/if_inet6 (an address in 32 hex
// digits, then index, prefix length, scope, flags and interface).
func parseLocalAddrs(out string) []netip.Prefix {
	var addrs []netip.Prefix
	var leaf netip.Addr
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 6 && len(f[0]) == 32:
			b, err := hex.DecodeString(f[0])
			if err == nil {
				addrs = append(addrs, netip.PrefixFrom(netip.AddrFrom16([16]byte(b)), 128))
			}
		case len(f) == 2 && f[0] == "|--":
			leaf, _ = netip.ParseAddr(f[1])
		case len(f) == 3 && f[1] == "host" && f[2] == "LOCAL" && leaf.Is4():
			if bits, err := strconv.Atoi(strings.TrimPrefix(f[0], "/")); err == nil {
				if p, err := leaf.Prefix(bits); err == nil {
					addrs = append(addrs, p)
				}
			}
		}
	}
	// fib_trie lists each address in its Main and Local tables.
	slices.SortFunc(addrs, netip.Prefix.Compare)
	return slices.Compact(addrs)
}

package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// OpenEgress serves the daemon's egress proxy to the pod on a port of its
// own, at the address pods reach the daemon at, and opens the pod's
// NetworkPolicy to that address and port alone: nothing else gets out.
// Connections to the port from anywhere but the pod are dropped.
func (r *Runtime) OpenEgress(ctx context.Context, inst contexts.Instance) (map[string]string, error) {
	if r.cfg.Egress == nil {
		return nil, contexts.ErrEgressDisabled
	}
	// A proxy served before a restart of the daemon goes first.
	r.closeEgress(inst.ContextID)
	l, err := r.listenEgress(ctx, inst.ContextID)
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := r.allowEgress(ctx, inst.ContextID, port); err != nil {
		l.Close()
		return nil, err
	}
	l = &podListener{Listener: l, pods: r, contextID: inst.ContextID}
	r.egressMu.Lock()
	r.egress[inst.ContextID] = l
	r.egressMu.Unlock()
	go func() {
		if err := r.cfg.Egress.Serve(l, inst.ContextID); err != nil && !errors.Is(err, net.ErrClosed) {
			r.log.Warn("egress proxy stopped", "context_id", inst.ContextID, "error", err)
		}
	}()
	return contexts.ProxyEnv("http://" + net.JoinHostPort(r.cfg.EgressAddress, strconv.Itoa(port))), nil
}

// listenEgress listens for the context's proxy on the port its policy
// already opens, if any: the kernel's environment names that port, since
// before a restart of the daemon. Otherwise, or when that port is taken,
// on a new one.
func (r *Runtime) listenEgress(ctx context.Context, contextID string) (net.Listener, error) {
	policy, err := r.cs.NetworkingV1().NetworkPolicies(r.cfg.Namespace).Get(ctx, podName(contextID), metav1.GetOptions{})
	if err != nil {
		return nil, unavailable(err, "read the network policy of "+contextID)
	}
	for _, rule := range policy.Spec.Egress {
		for _, p := range rule.Ports {
			if p.Port == nil {
				continue
			}
			if l, err := net.Listen("tcp", net.JoinHostPort(r.cfg.EgressAddress, p.Port.String())); err == nil {
				return l, nil
			}
			r.log.Warn("the port of a context's egress proxy is taken: it gets a new one, which its kernel does not know of", "context_id", contextID, "port", p.Port.String())
		}
	}
	l, err := net.Listen("tcp", net.JoinHostPort(r.cfg.EgressAddress, "0"))
	if err != nil {
		return nil, fmt.Errorf("egress for %s: %w", contextID, err)
	}
	return l, nil
}

// allowEgress replaces the egress rules of the context's policy with one
// to the daemon's proxy port.
func (r *Runtime) allowEgress(ctx context.Context, contextID string, port int) error {
	addr, err := netip.ParseAddr(r.cfg.EgressAddress)
	if err != nil {
		return fmt.Errorf("egress address: %w", err)
	}
	tcp := corev1.ProtocolTCP
	p := intstr.FromInt(port)
	rules := []networkingv1.NetworkPolicyEgressRule{{
		To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: netip.PrefixFrom(addr, addr.BitLen()).String()}}},
		Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p}},
	}}
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"egress": rules}})
	if err != nil {
		return err
	}
	_, err = r.cs.NetworkingV1().NetworkPolicies(r.cfg.Namespace).Patch(ctx, podName(contextID), types.MergePatchType, patch, metav1.PatchOptions{})
	return unavailable(err, "open the network policy of "+contextID)
}

// closeEgress stops serving a context's egress proxy, which cuts its open
// connections.
func (r *Runtime) closeEgress(contextID string) {
	r.egressMu.Lock()
	defer r.egressMu.Unlock()
	if l := r.egress[contextID]; l != nil {
		l.Close()
		delete(r.egress, contextID)
	}
}

// podListener drops connections from anywhere but the context's pod.
type podListener struct {
	net.Listener
	pods      *Runtime
	contextID string
}

func (l *podListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		pod, perr := l.pods.pods.Get(podName(l.contextID))
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		if perr == nil && pod.Status.PodIP != "" && host == pod.Status.PodIP {
			return c, nil
		}
		c.Close()
	}
}

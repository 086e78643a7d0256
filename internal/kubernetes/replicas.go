package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	coordinationlisters "k8s.io/client-go/listers/coordination/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// Timing of the replicas' Leases: a replica renews its own every
// leaseRenew; one not renewed for leaseDuration is dead, and the others
// take its contexts over, which they look for every sweepEvery.
const (
	leaseDuration = 10 * time.Second
	leaseRenew    = 3 * time.Second
	sweepEvery    = 10 * time.Second
)

// annotationURL, on a replica's Lease, is the URL it serves the API at.
const annotationURL = "sandboxd.url"

// Adopter takes over a context or sandbox another replica drove.
type Adopter interface {
	Adopt(ctx context.Context, inst contexts.Instance) error
}

// Replicas lets several replicas of one daemon serve the same contexts.
// Each context is driven by one replica, its owner, named by its pod's
// label: the owner alone talks to its kernel, so that its executions keep
// their order. Each replica keeps a Lease while it lives; the contexts of
// a replica whose Lease runs out are claimed by another, which takes them
// over with their records.
type Replicas struct {
	r         *Runtime
	advertise string
	adopter   Adopter
	leases    coordinationlisters.LeaseNamespaceLister
	factory   informers.SharedInformerFactory
	now       func() time.Time

	stop      chan struct{}
	stopped   context.Context // ends with stop
	endStop   context.CancelFunc
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu     sync.Mutex
	claims map[string]*takeover // by context id: those under way
}

// takeover is one under way: err is set once done is closed.
type takeover struct {
	done chan struct{}
	err  error
}

// NewReplicas starts watching the replicas' Leases. advertise is the URL
// the other replicas reach this one at; adopter takes contexts over.
// Call Start to keep the Lease and sweep.
func NewReplicas(ctx context.Context, r *Runtime, advertise string, adopter Adopter) (*Replicas, error) {
	factory := informers.NewSharedInformerFactoryWithOptions(r.cs, 0,
		informers.WithNamespace(r.cfg.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = labelOwner + "=" + r.cfg.Owner }))
	informer := factory.Coordination().V1().Leases()
	p := &Replicas{
		r: r, advertise: advertise, adopter: adopter, now: time.Now,
		leases: informer.Lister().Leases(r.cfg.Namespace),
		stop:   make(chan struct{}), claims: map[string]*takeover{},
	}
	p.stopped, p.endStop = context.WithCancel(context.Background())
	informer.Informer() // registers it before Start
	factory.Start(p.stop)
	p.factory = factory
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), informer.Informer().HasSynced) {
		close(p.stop)
		p.endStop()
		return nil, unavailable(fmt.Errorf("list leases in namespace %s: %w", r.cfg.Namespace, sctx.Err()), "watch leases")
	}
	return p, nil
}

func (p *Replicas) leaseName(replica string) string {
	return "sandboxd-" + p.r.cfg.Owner + "-" + replica
}

// Renew writes this replica's Lease: call it before Recover, so that no
// other replica takes this one's contexts over meanwhile.
func (p *Replicas) Renew(ctx context.Context) error {
	leases := p.r.cs.CoordinationV1().Leases(p.r.cfg.Namespace)
	name := p.leaseName(p.r.cfg.Replica)
	lease, err := leases.Get(ctx, name, metav1.GetOptions{})
	missing := apierrors.IsNotFound(err)
	if missing {
		lease = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name}}
	} else if err != nil {
		return unavailable(err, "get lease "+name)
	}
	now := metav1.NewMicroTime(p.now())
	seconds := int32(leaseDuration / time.Second)
	lease.Labels = map[string]string{labelOwner: p.r.cfg.Owner, labelReplica: p.r.cfg.Replica}
	lease.Annotations = map[string]string{annotationURL: p.advertise}
	lease.Spec.HolderIdentity = &p.r.cfg.Replica
	lease.Spec.LeaseDurationSeconds = &seconds
	lease.Spec.RenewTime = &now
	if missing {
		lease.Spec.AcquireTime = &now
		_, err = leases.Create(ctx, lease, metav1.CreateOptions{})
		return unavailable(err, "create lease "+name)
	}
	_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	return unavailable(err, "renew lease "+name)
}

// Start renews the Lease and sweeps for contexts of dead replicas, in the
// background, until Close.
func (p *Replicas) Start() {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		renew := time.NewTicker(leaseRenew)
		defer renew.Stop()
		sweep := time.NewTicker(sweepEvery)
		defer sweep.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-renew.C:
				ctx, cancel := context.WithTimeout(context.Background(), leaseRenew)
				if err := p.Renew(ctx); err != nil {
					p.r.log.Warn("could not renew this replica's lease", "error", err)
				}
				cancel()
			case <-sweep.C:
				p.sweep()
			}
		}
	}()
}

// Close stops renewing the Lease and sweeping, and ends the takeovers
// under way. The Lease stays until Leave: the others must not take this
// replica's contexts over while its Manager still holds them.
func (p *Replicas) Close() {
	p.closeOnce.Do(func() {
		close(p.stop)
		p.endStop()
	})
	p.wg.Wait()
	p.factory.Shutdown()
}

// Leave deletes the Lease, once the Manager has let its contexts go, so
// that the others take them over at once.
func (p *Replicas) Leave() error {
	p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return ignoreNotFound(p.r.cs.CoordinationV1().Leases(p.r.cfg.Namespace).Delete(ctx, p.leaseName(p.r.cfg.Replica), metav1.DeleteOptions{}), "delete lease")
}

// leaseFresh reports whether l was renewed within its duration.
func leaseFresh(l *coordinationv1.Lease, now time.Time) bool {
	if l == nil || l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return false
	}
	return now.Before(l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second))
}

// live returns the URL of replica when its Lease is fresh.
func (p *Replicas) live(replica string) (*url.URL, bool) {
	l, err := p.leases.Get(p.leaseName(replica))
	if err != nil || !leaseFresh(l, p.now()) {
		return nil, false
	}
	u, err := url.Parse(l.Annotations[annotationURL])
	if err != nil || u.Host == "" {
		return nil, false
	}
	return u, true
}

// Peers returns the URLs of the other live replicas.
func (p *Replicas) Peers(context.Context) ([]*url.URL, error) {
	all, err := p.leases.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var peers []*url.URL
	for _, l := range all {
		replica := l.Labels[labelReplica]
		if replica == p.r.cfg.Replica || l.Name != p.leaseName(replica) {
			continue
		}
		if u, ok := p.live(replica); ok {
			peers = append(peers, u)
		}
	}
	return peers, nil
}

// Locate returns the URL of the live replica that drives id, a context or
// sandbox this replica does not hold. When its owner is dead, this
// replica takes it over, and Locate returns nil: it is served here. It
// returns nil too when there is no such context, or it is this
// replica's.
func (p *Replicas) Locate(ctx context.Context, id string) (*url.URL, error) {
	pod, err := p.r.pods.Get(podName(id))
	if apierrors.IsNotFound(err) {
		// Made by another replica a moment ago, perhaps: not yet in the cache.
		pod, err = p.r.cs.CoreV1().Pods(p.r.cfg.Namespace).Get(ctx, podName(id), metav1.GetOptions{})
	}
	for range 3 {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, unavailable(err, "get pod")
		}
		if pod.Labels[labelOwner] != p.r.cfg.Owner || isCanary(pod) {
			return nil, nil // another daemon's, or no context
		}
		owner := pod.Labels[labelReplica]
		if owner == p.r.cfg.Replica {
			return nil, nil
		}
		if u, ok := p.live(owner); ok {
			return u, nil
		}
		err = p.takeOver(ctx, pod)
		if !apierrors.IsConflict(err) {
			return nil, err
		}
		// Another replica claimed it first: it drives it now.
		pod, err = p.r.cs.CoreV1().Pods(p.r.cfg.Namespace).Get(ctx, podName(id), metav1.GetOptions{})
	}
	return nil, contexts.Errorf(contexts.CodeRuntimeUnavailable, "the replicas keep claiming %s from each other", id)
}

// sweep takes over the contexts whose owner is dead, and deletes the
// Leases of dead replicas that drive none: replicas named after their pods
// get a new name each time.
func (p *Replicas) sweep() {
	pods, err := p.r.pods.List(labels.Everything())
	if err != nil {
		return
	}
	driving := map[string]bool{}
	for _, pod := range pods {
		driving[pod.Labels[labelReplica]] = true
	}
	if leases, err := p.leases.List(labels.Everything()); err == nil {
		for _, l := range leases {
			if replica := l.Labels[labelReplica]; !driving[replica] && replica != p.r.cfg.Replica && !leaseFresh(l, p.now()) {
				ctx, cancel := context.WithTimeout(p.stopped, apiTimeout)
				p.r.cs.CoordinationV1().Leases(p.r.cfg.Namespace).Delete(ctx, l.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &l.ResourceVersion}})
				cancel()
			}
		}
	}
	for _, pod := range pods {
		owner := pod.Labels[labelReplica]
		// A canary belongs to the check of a replica that may be
		// starting, before its Lease.
		if owner == p.r.cfg.Replica || pod.DeletionTimestamp != nil || isCanary(pod) {
			continue
		}
		if _, ok := p.live(owner); ok {
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			ctx, cancel := context.WithTimeout(p.stopped, time.Minute) // Close cancels it
			defer cancel()
			if err := p.takeOver(ctx, pod); err != nil && !apierrors.IsConflict(err) {
				p.r.log.Warn("could not take over a context of a dead replica", "context_id", pod.Labels[labelContextID], "replica", owner, "error", err)
			}
		}()
	}
}

// takeOver claims pod, then adopts its context. Concurrent takeovers of
// one context in this replica wait for the first. The error is a
// conflict when another replica claimed it first.
func (p *Replicas) takeOver(ctx context.Context, pod *corev1.Pod) error {
	id := pod.Labels[labelContextID]
	p.mu.Lock()
	if t, ok := p.claims[id]; ok {
		p.mu.Unlock()
		select {
		case <-t.done:
			return t.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	t := &takeover{done: make(chan struct{})}
	p.claims[id] = t
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.claims, id)
		p.mu.Unlock()
		close(t.done)
	}()
	if t.err = p.claim(ctx, pod); t.err != nil {
		return t.err
	}
	p.r.log.Info("taking over a context of a dead replica", "context_id", id, "replica", pod.Labels[labelReplica])
	_, ended := podEnded(pod)
	t.err = p.adopter.Adopt(ctx, contexts.Instance{ContextID: id, ID: pod.Name, Labels: claimedLabels(pod.Labels, p.r.cfg.Replica), Running: !ended})
	return t.err
}

// claim relabels pod, its Secret and its NetworkPolicy as this replica's.
// The pod's patch carries its resourceVersion, so that of two replicas
// claiming it one wins and the other gets a conflict.
func (p *Replicas) claim(ctx context.Context, pod *corev1.Pod) error {
	ns := p.r.cfg.Namespace
	patch, err := claimPatch(pod.ResourceVersion, p.r.cfg.Replica)
	if err != nil {
		return err
	}
	if _, err := p.r.cs.CoreV1().Pods(ns).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return err
		}
		return unavailable(err, "claim pod "+pod.Name)
	}
	// The pod decides; these follow it, and Prune goes by their labels.
	patch, _ = claimPatch("", p.r.cfg.Replica)
	if _, err := p.r.cs.CoreV1().Secrets(ns).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return unavailable(err, "claim secret "+pod.Name)
	}
	if _, err := p.r.cs.NetworkingV1().NetworkPolicies(ns).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return unavailable(err, "claim network policy "+pod.Name)
	}
	return nil
}

// claimPatch sets the replica label; with resourceVersion, only on that
// version of the object.
func claimPatch(resourceVersion, replica string) ([]byte, error) {
	meta := map[string]any{"labels": map[string]string{labelReplica: replica}}
	if resourceVersion != "" {
		meta["resourceVersion"] = resourceVersion
	}
	return json.Marshal(map[string]any{"metadata": meta})
}

func claimedLabels(old map[string]string, replica string) map[string]string {
	labels := make(map[string]string, len(old))
	for k, v := range old {
		labels[k] = v
	}
	labels[labelReplica] = replica
	return labels
}

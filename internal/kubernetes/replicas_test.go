package kubernetes

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

const testNS = "ns"

func TestLeaseFresh(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	lease := func(renewed time.Duration, seconds int32) *coordinationv1.Lease {
		at := metav1.NewMicroTime(now.Add(-renewed))
		return &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{RenewTime: &at, LeaseDurationSeconds: &seconds}}
	}
	for _, tc := range []struct {
		name  string
		lease *coordinationv1.Lease
		fresh bool
	}{
		{"just renewed", lease(time.Second, 10), true},
		{"almost run out", lease(9*time.Second, 10), true},
		{"run out", lease(10*time.Second, 10), false},
		{"long dead", lease(time.Hour, 10), false},
		{"never renewed", &coordinationv1.Lease{}, false},
		{"missing", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := leaseFresh(tc.lease, now); got != tc.fresh {
				t.Errorf("leaseFresh = %v, want %v", got, tc.fresh)
			}
		})
	}
}

// fakeAdopter records what it is asked to take over.
type fakeAdopter struct {
	mu    sync.Mutex
	insts []contexts.Instance
}

func (a *fakeAdopter) Adopt(_ context.Context, inst contexts.Instance) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.insts = append(a.insts, inst)
	return nil
}

func (a *fakeAdopter) adopted() []contexts.Instance {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]contexts.Instance(nil), a.insts...)
}

// contextObjects are a context's pod, Secret and NetworkPolicy, driven by
// replica.
func contextObjects(id, replica string) []runtime.Object {
	meta := metav1.ObjectMeta{Name: podName(id), Namespace: testNS, ResourceVersion: "1",
		Labels: map[string]string{labelOwner: "d", labelReplica: replica, labelContextID: id}}
	return []runtime.Object{
		&corev1.Pod{ObjectMeta: meta, Status: corev1.PodStatus{Phase: corev1.PodRunning}},
		&corev1.Secret{ObjectMeta: meta},
		&networkingv1.NetworkPolicy{ObjectMeta: meta},
	}
}

// replicaLease is replica's Lease, renewed age ago.
func replicaLease(replica, url string, age time.Duration) *coordinationv1.Lease {
	at := metav1.NewMicroTime(time.Now().Add(-age))
	seconds := int32(leaseDuration / time.Second)
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "sandboxd-d-" + replica, Namespace: testNS,
			Labels: map[string]string{labelOwner: "d", labelReplica: replica}, Annotations: map[string]string{annotationURL: url}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &replica, RenewTime: &at, LeaseDurationSeconds: &seconds},
	}
}

// newTestReplicas is replica "b" of daemon "d", on a fake cluster.
func newTestReplicas(t *testing.T, cs *fake.Clientset) (*Replicas, *fakeAdopter) {
	t.Helper()
	r := &Runtime{cfg: Config{Namespace: testNS, Owner: "d", Replica: "b"}, cs: cs, log: slog.New(slog.DiscardHandler), stop: make(chan struct{}), watchers: map[string]func(string){}}
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(testNS))
	pods := factory.Core().V1().Pods()
	r.pods = pods.Lister().Pods(testNS)
	pods.Informer()
	factory.Start(r.stop)
	if !cache.WaitForCacheSync(t.Context().Done(), pods.Informer().HasSynced) {
		t.Fatal("pods not listed")
	}
	t.Cleanup(func() { close(r.stop) })
	adopter := &fakeAdopter{}
	p, err := NewReplicas(t.Context(), r, "http://b:8080", adopter)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, adopter
}

func TestLocateForwardsToALiveOwner(t *testing.T) {
	cs := fake.NewClientset(append(contextObjects("c1", "a"), replicaLease("a", "http://a:8080", time.Second))...)
	p, adopter := newTestReplicas(t, cs)
	u, err := p.Locate(t.Context(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if u == nil || u.String() != "http://a:8080" {
		t.Fatalf("Locate = %v, want http://a:8080", u)
	}
	if got := adopter.adopted(); len(got) != 0 {
		t.Errorf("adopted %v from a live replica", got)
	}
}

func TestLocateServesUnknownAndOwnContextsHere(t *testing.T) {
	cs := fake.NewClientset(contextObjects("mine", "b")...)
	p, adopter := newTestReplicas(t, cs)
	for _, id := range []string{"mine", "none"} {
		if u, err := p.Locate(t.Context(), id); u != nil || err != nil {
			t.Errorf("Locate(%s) = %v, %v; want nil, nil", id, u, err)
		}
	}
	if got := adopter.adopted(); len(got) != 0 {
		t.Errorf("adopted %v", got)
	}
}

func TestLocateTakesOverFromADeadOwner(t *testing.T) {
	cs := fake.NewClientset(append(contextObjects("c1", "a"), replicaLease("a", "http://a:8080", time.Minute))...)
	p, adopter := newTestReplicas(t, cs)
	u, err := p.Locate(t.Context(), "c1")
	if err != nil || u != nil {
		t.Fatalf("Locate = %v, %v; want nil, nil", u, err)
	}
	got := adopter.adopted()
	if len(got) != 1 || got[0].ContextID != "c1" || !got[0].Running || got[0].Labels[labelReplica] != "b" {
		t.Fatalf("adopted %+v, want c1 labelled b", got)
	}
	ctx := t.Context()
	pod, _ := cs.CoreV1().Pods(testNS).Get(ctx, podName("c1"), metav1.GetOptions{})
	secret, _ := cs.CoreV1().Secrets(testNS).Get(ctx, podName("c1"), metav1.GetOptions{})
	policy, _ := cs.NetworkingV1().NetworkPolicies(testNS).Get(ctx, podName("c1"), metav1.GetOptions{})
	for kind, labels := range map[string]map[string]string{"pod": pod.Labels, "secret": secret.Labels, "policy": policy.Labels} {
		if labels[labelReplica] != "b" {
			t.Errorf("the %s's replica is %q, want b", kind, labels[labelReplica])
		}
	}
}

// TestLocateLosesAClaimToAnother: replica c claims the context between
// b's read and b's patch; b must forward to c, not take it over too.
func TestLocateLosesAClaimToAnother(t *testing.T) {
	cs := fake.NewClientset(append(contextObjects("c1", "a"),
		replicaLease("a", "http://a:8080", time.Minute), replicaLease("c", "http://c:8080", time.Second))...)
	conflictOnStaleVersion(cs, func() {
		pod, _ := cs.Tracker().Get(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, testNS, podName("c1"))
		won := pod.(*corev1.Pod).DeepCopy()
		won.Labels[labelReplica] = "c"
		won.ResourceVersion = "2"
		cs.Tracker().Update(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, won, testNS)
	})
	p, adopter := newTestReplicas(t, cs)
	u, err := p.Locate(t.Context(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if u == nil || u.String() != "http://c:8080" {
		t.Fatalf("Locate = %v, want the winner http://c:8080", u)
	}
	if got := adopter.adopted(); len(got) != 0 {
		t.Errorf("adopted %v that another replica won", got)
	}
}

// conflictOnStaleVersion makes the fake API server refuse a pod patch
// whose resourceVersion is not the pod's, as the real one does; before
// the first patch it calls race, another replica's claim.
func conflictOnStaleVersion(cs *fake.Clientset, race func()) {
	var once sync.Once
	cs.PrependReactor("patch", "pods", func(action k8stesting.Action) (bool, runtime.Object, error) {
		once.Do(race)
		patch := action.(k8stesting.PatchAction)
		var body struct {
			Metadata struct {
				ResourceVersion string `json:"resourceVersion"`
			} `json:"metadata"`
		}
		json.Unmarshal(patch.GetPatch(), &body)
		obj, err := cs.Tracker().Get(patch.GetResource(), patch.GetNamespace(), patch.GetName())
		if err != nil {
			return true, nil, err
		}
		if v := body.Metadata.ResourceVersion; v != "" && v != obj.(*corev1.Pod).ResourceVersion {
			return true, nil, apierrors.NewConflict(patch.GetResource().GroupResource(), patch.GetName(), nil)
		}
		return false, nil, nil
	})
}

func TestSweepTakesOverOnlyDeadReplicasContexts(t *testing.T) {
	objs := append(contextObjects("dead1", "a"), contextObjects("live1", "c")...)
	objs = append(objs, contextObjects("mine", "b")...)
	objs = append(objs, replicaLease("a", "http://a:8080", time.Minute), replicaLease("c", "http://c:8080", time.Second),
		replicaLease("gone", "http://gone:8080", time.Minute))
	cs := fake.NewClientset(objs...)
	p, adopter := newTestReplicas(t, cs)
	p.sweep()
	p.wg.Wait()
	got := adopter.adopted()
	if len(got) != 1 || got[0].ContextID != "dead1" {
		t.Fatalf("swept %+v, want dead1 alone", got)
	}
	// The Lease of a dead replica that drives nothing goes; the others stay.
	for replica, want := range map[string]bool{"gone": false, "a": true, "c": true} {
		_, err := cs.CoordinationV1().Leases(testNS).Get(t.Context(), "sandboxd-d-"+replica, metav1.GetOptions{})
		if kept := err == nil; kept != want {
			t.Errorf("lease of %s kept: %v, want %v (%v)", replica, kept, want, err)
		}
	}
}

func TestRenewKeepsALeaseOthersSee(t *testing.T) {
	cs := fake.NewClientset()
	p, _ := newTestReplicas(t, cs)
	if err := p.Renew(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := p.Renew(t.Context()); err != nil {
		t.Fatal("renewing again:", err)
	}
	lease, err := cs.CoordinationV1().Leases(testNS).Get(t.Context(), "sandboxd-d-b", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !leaseFresh(lease, time.Now()) || *lease.Spec.HolderIdentity != "b" || lease.Annotations[annotationURL] != "http://b:8080" || lease.Labels[labelOwner] != "d" {
		t.Errorf("lease = %+v", lease)
	}
	p.Close()
	if _, err := cs.CoordinationV1().Leases(testNS).Get(t.Context(), "sandboxd-d-b", metav1.GetOptions{}); err != nil {
		t.Errorf("the lease is gone at Close, before the Manager let its contexts go: %v", err)
	}
	if err := p.Leave(); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoordinationV1().Leases(testNS).Get(t.Context(), "sandboxd-d-b", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the lease outlives Leave: %v", err)
	}
}

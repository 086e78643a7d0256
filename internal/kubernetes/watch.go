package kubernetes

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// Watch calls ended once, when the pod's server ends, the pod is deleted,
// or it cannot start.
func (r *Runtime) Watch(inst contexts.Instance, ended func(exit string)) {
	name := podName(inst.ContextID)
	r.watchMu.Lock()
	select {
	case <-r.stop:
		r.watchMu.Unlock()
		return
	default:
	}
	r.watchers[name] = ended
	r.watchMu.Unlock()
	// It may have ended before anyone watched.
	if pod, err := r.pods.Get(name); err == nil {
		r.podChanged(pod)
	}
}

func (r *Runtime) podChanged(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if exit, ended := podEnded(pod); ended {
		r.ended(pod.Name, exit)
	}
}

func (r *Runtime) podDeleted(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if pod, ok := obj.(*corev1.Pod); ok {
		r.ended(pod.Name, "the pod was deleted")
	}
}

// ended calls the watcher of the pod name, once.
func (r *Runtime) ended(name, exit string) {
	r.watchMu.Lock()
	defer r.watchMu.Unlock()
	fn := r.watchers[name]
	if fn == nil {
		return
	}
	delete(r.watchers, name)
	// Not on the informer's goroutine: what ended does may call back.
	r.calls.Add(1)
	go func() {
		defer r.calls.Done()
		fn(exit)
	}()
}

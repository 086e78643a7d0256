package kubernetes

import (
	"context"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// OpenEgress refuses: contexts on Kubernetes have no way out.
func (r *Runtime) OpenEgress(context.Context, contexts.Instance) (map[string]string, error) {
	return nil, contexts.Errorf(contexts.CodeEgressDisabled, "contexts on Kubernetes have no network access yet")
}

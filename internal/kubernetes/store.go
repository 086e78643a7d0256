package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sandboxd/sandboxd/internal/contexts"
)

// secretStore keeps each context's record in its Secret, beside its
// server's token, where every replica finds it.
type secretStore struct{ r *Runtime }

// Store keeps the records in the contexts' Secrets. Histories are kept in
// memory only.
func (r *Runtime) Store() contexts.Store { return secretStore{r} }

// apiTimeout bounds each call the store makes: its interface takes no
// context.
const apiTimeout = 30 * time.Second

func (s secretStore) Save(rec contexts.Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"data": map[string][]byte{secretRecord: b}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	_, err = s.r.cs.CoreV1().Secrets(s.r.cfg.Namespace).Patch(ctx, podName(rec.ID), types.MergePatchType, patch, metav1.PatchOptions{})
	return unavailable(err, "save the record of "+rec.ID)
}

func (s secretStore) Load(id string) (contexts.Record, error) {
	var rec contexts.Record
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	secret, err := s.r.cs.CoreV1().Secrets(s.r.cfg.Namespace).Get(ctx, podName(id), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return rec, fmt.Errorf("no secret of %s: %w", id, os.ErrNotExist)
	}
	if err != nil {
		return rec, unavailable(err, "load the record of "+id)
	}
	b, ok := secret.Data[secretRecord]
	if !ok {
		return rec, fmt.Errorf("no record of %s in its secret: %w", id, os.ErrNotExist)
	}
	return rec, json.Unmarshal(b, &rec)
}

// Drop leaves the Secret to Remove, which deletes it with the pod: the pod
// may still need it.
func (s secretStore) Drop(string) {}

// Prune deletes the Secrets of this replica's contexts that keep says no
// to, and that have no pod: those of other replicas are theirs to keep.
func (s secretStore) Prune(keep func(id string) bool) {
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	secrets, err := s.r.cs.CoreV1().Secrets(s.r.cfg.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labelOwner + "=" + s.r.cfg.Owner + "," + labelReplica + "=" + s.r.cfg.Replica,
	})
	if err != nil {
		s.r.log.Warn("cannot list the contexts' secrets to prune them", "error", err)
		return
	}
	for _, secret := range secrets.Items {
		id := secret.Labels[labelContextID]
		if keep(id) {
			continue
		}
		if _, err := s.r.cs.CoreV1().Pods(s.r.cfg.Namespace).Get(ctx, secret.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			continue
		}
		s.r.cs.CoreV1().Secrets(s.r.cfg.Namespace).Delete(ctx, secret.Name, metav1.DeleteOptions{})
		s.r.cs.NetworkingV1().NetworkPolicies(s.r.cfg.Namespace).Delete(ctx, secret.Name, metav1.DeleteOptions{})
	}
}

func (secretStore) HistoryFile(string) string { return "" }

package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/open-policy-agent/opa/v1/storage"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	regorules "github.com/podwall/podwall/rules"
)

// kubeSync keeps data.kubernetes in the Rego rules' store in step with the
// informers the Go rules read (CacheCluster's), through event handlers
// added while some rule uses rego and removed after: the handlers of a
// running informer get its current objects first, so starting late is
// the same as starting with it.
type kubeSync struct {
	store     storage.Store
	informers []cache.Informer
	log       logr.Logger

	mu   sync.Mutex // serializes start, stop and every write
	sess *kubeSession
}

type kubeSession struct {
	regs   []toolscache.ResourceEventHandlerRegistration
	active bool // false once stopped: late events are dropped
}

// AttachCluster makes r replicate c's Namespaces, Pods, Services and
// NetworkPolicies into data.kubernetes while some rule uses rego, starting
// now if one does. Attach once, before requests come.
func (r *RegoRules) AttachCluster(c *CacheCluster) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kube != nil {
		return errors.New("a cluster is already attached to the Rego rules")
	}
	k := &kubeSync{
		store:     r.store,
		informers: []cache.Informer{c.namespaces.inf, c.pods.inf, c.services.inf, c.policies.inf},
		log:       r.log.WithName("cluster"),
	}
	if len(*r.families.Load()) > 0 {
		if err := k.start(); err != nil {
			return err
		}
	}
	r.kube = k
	return nil
}

// start adds the event handlers, if they are not there.
func (k *kubeSync) start() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.sess != nil {
		return nil
	}
	s := &kubeSession{active: true}
	for _, inf := range k.informers {
		reg, err := inf.AddEventHandler(k.handler(s))
		if err != nil {
			for i, r := range s.regs {
				_ = k.informers[i].RemoveEventHandler(r)
			}
			return fmt.Errorf("replicating the cluster for the Rego rules: %w", err)
		}
		s.regs = append(s.regs, reg)
	}
	k.sess = s
	k.log.Info("replicating the cluster into data.kubernetes for the Rego rules")
	return nil
}

// stop removes the handlers and the replicated objects.
func (k *kubeSync) stop(ctx context.Context) {
	k.mu.Lock()
	s := k.sess
	if s == nil {
		k.mu.Unlock()
		return
	}
	// Writes check active under mu: none comes after this, and a new
	// session's writes come after the removal.
	s.active = false
	k.sess = nil
	err := storage.WriteOne(ctx, k.store, storage.RemoveOp, storage.Path{"kubernetes"}, nil)
	k.mu.Unlock()
	if err != nil && !storage.IsNotFound(err) {
		k.log.Error(err, "dropping data.kubernetes")
	}
	for i, r := range s.regs {
		_ = k.informers[i].RemoveEventHandler(r)
	}
	k.log.Info("no rule uses rego: stopped replicating the cluster")
}

// synced reports whether every handler has seen its informer's initial
// list.
func (k *kubeSync) synced() bool {
	k.mu.Lock()
	s := k.sess
	k.mu.Unlock()
	if s == nil {
		return false
	}
	for _, r := range s.regs {
		if !r.HasSynced() {
			return false
		}
	}
	return true
}

func (k *kubeSync) waitForSync(ctx context.Context) bool {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !k.synced() {
		select {
		case <-ctx.Done():
			return k.synced()
		case <-t.C:
		}
	}
	return true
}

func (k *kubeSync) handler(s *kubeSession) toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { k.put(s, obj) },
		UpdateFunc: func(old, obj any) {
			if sameVersion(old, obj) {
				return // a resync: nothing changed
			}
			k.put(s, obj)
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			k.write(s, obj, true)
		},
	}
}

func (k *kubeSync) put(s *kubeSession, obj any) { k.write(s, obj, false) }

func (k *kubeSync) write(s *kubeSession, obj any, del bool) {
	o, ok := obj.(runtime.Object)
	if !ok {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if !s.active {
		return
	}
	ctx := context.Background()
	var err error
	if del {
		err = regorules.DeleteKubernetesObject(ctx, k.store, o)
	} else {
		err = regorules.PutKubernetesObject(ctx, k.store, o)
	}
	if err != nil {
		// The object stays as it was in data.kubernetes; the next event
		// for it replaces it.
		kubeSyncErrors.Inc()
		k.log.Error(err, "updating data.kubernetes")
	}
}

func sameVersion(a, b any) bool {
	ma, err1 := meta.Accessor(a)
	mb, err2 := meta.Accessor(b)
	if err1 != nil || err2 != nil {
		return false
	}
	return ma.GetResourceVersion() != "" && ma.GetResourceVersion() == mb.GetResourceVersion()
}

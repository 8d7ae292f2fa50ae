package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// KubeSource feeds an agent from the Kubernetes API with client-go
// informers on pods (every node's: peers on other nodes are selected too),
// namespaces, nodes and NetworkPolicies. It needs get, list and watch on
// those four resources. It reports Synced once every informer has listed
// and handed its objects to the agent.
type KubeSource struct {
	// Client reaches the API server. Required.
	Client kubernetes.Interface
	// ResyncPeriod is the informers' resync period, which replays every
	// object to the agent. Default 0: none (the agent's own periodic
	// resync repairs the kernel; the informers' watch keeps the objects).
	ResyncPeriod time.Duration
}

// Name returns "kubernetes".
func (s *KubeSource) Name() string { return "kubernetes" }

// Run starts the informers and feeds their events until ctx is done.
func (s *KubeSource) Run(ctx context.Context, sink Sink) error {
	if s.Client == nil {
		return errors.New("no Kubernetes client")
	}
	f := informers.NewSharedInformerFactoryWithOptions(s.Client, s.ResyncPeriod,
		informers.WithTransform(stripManagedFields))
	type inf struct {
		what string
		i    cache.SharedIndexInformer
		h    cache.ResourceEventHandlerFuncs
	}
	infs := []inf{
		{"pods", f.Core().V1().Pods().Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { withPod(o, sink.SetPod) },
			UpdateFunc: func(_, o any) { withPod(o, sink.SetPod) },
			DeleteFunc: func(o any) { withKey(o, sink.DeletePod) },
		}},
		{"namespaces", f.Core().V1().Namespaces().Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { withNamespace(o, sink.SetNamespace) },
			UpdateFunc: func(_, o any) { withNamespace(o, sink.SetNamespace) },
			DeleteFunc: func(o any) { withKey(o, func(_, name string) { sink.DeleteNamespace(name) }) },
		}},
		{"nodes", f.Core().V1().Nodes().Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { withNode(o, sink.SetNode) },
			UpdateFunc: func(_, o any) { withNode(o, sink.SetNode) },
			DeleteFunc: func(o any) { withKey(o, func(_, name string) { sink.DeleteNode(name) }) },
		}},
		{"networkpolicies", f.Networking().V1().NetworkPolicies().Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { withPolicy(o, sink.SetPolicy) },
			UpdateFunc: func(_, o any) { withPolicy(o, sink.SetPolicy) },
			DeleteFunc: func(o any) { withKey(o, sink.DeletePolicy) },
		}},
	}
	var synced []cache.InformerSynced
	for _, x := range infs {
		what := x.what
		if err := x.i.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			sink.Error(fmt.Errorf("watching %s: %w", what, err))
		}); err != nil {
			return err
		}
		reg, err := x.i.AddEventHandler(x.h)
		if err != nil {
			return fmt.Errorf("informer for %s: %w", what, err)
		}
		synced = append(synced, reg.HasSynced)
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil // ctx done
	}
	sink.Synced()
	<-ctx.Done()
	return nil
}

// stripManagedFields drops what the agent never reads and that weighs most
// in a large cluster's informer caches.
func stripManagedFields(o any) (any, error) {
	if m, err := meta.Accessor(o); err == nil {
		m.SetManagedFields(nil)
	}
	return o, nil
}

func withPod(o any, fn func(*corev1.Pod)) {
	if p, ok := o.(*corev1.Pod); ok {
		fn(p)
	}
}

func withNamespace(o any, fn func(*corev1.Namespace)) {
	if n, ok := o.(*corev1.Namespace); ok {
		fn(n)
	}
}

func withNode(o any, fn func(*corev1.Node)) {
	if n, ok := o.(*corev1.Node); ok {
		fn(n)
	}
}

func withPolicy(o any, fn func(*networkingv1.NetworkPolicy)) {
	if np, ok := o.(*networkingv1.NetworkPolicy); ok {
		fn(np)
	}
}

// withKey calls fn with the namespace and name of a deleted object, which
// may come as a tombstone when the watch missed the deletion.
func withKey(o any, fn func(namespace, name string)) {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		ns, name, err := cache.SplitMetaNamespaceKey(t.Key)
		if err == nil {
			fn(ns, name)
		}
		return
	}
	if m, err := meta.Accessor(o); err == nil {
		fn(m.GetNamespace(), m.GetName())
	}
}

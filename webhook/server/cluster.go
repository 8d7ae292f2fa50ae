package server

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podwall/podwall/webhook/rules"
)

// CacheCluster implements rules.Cluster over a controller-runtime cache: it
// reads Namespaces, NetworkPolicies, Pods and Services from the cache's
// informers, without copying the objects (which the rules only read). It
// also implements rules.NamespaceLister.
type CacheCluster struct {
	namespaces, policies, pods, services cacheIndex
	synced                               atomic.Bool
}

var (
	_ rules.Cluster         = (*CacheCluster)(nil)
	_ rules.NamespaceLister = (*CacheCluster)(nil)
)

// cacheIndex reads one type from the cache.
type cacheIndex struct {
	inf     cache.Informer
	indexer toolscache.Indexer // nil: read through reader
	reader  client.Reader
	newList func() client.ObjectList
}

// NewCacheCluster gets (and so registers) the informers for the four types
// the rules read. Call it before the cache starts, or the informers start
// on first use.
func NewCacheCluster(ctx context.Context, c cache.Cache) (*CacheCluster, error) {
	cc := &CacheCluster{}
	for _, x := range []struct {
		idx     *cacheIndex
		obj     client.Object
		newList func() client.ObjectList
	}{
		{&cc.namespaces, &corev1.Namespace{}, func() client.ObjectList { return &corev1.NamespaceList{} }},
		{&cc.policies, &networkingv1.NetworkPolicy{}, func() client.ObjectList { return &networkingv1.NetworkPolicyList{} }},
		{&cc.pods, &corev1.Pod{}, func() client.ObjectList { return &corev1.PodList{} }},
		{&cc.services, &corev1.Service{}, func() client.ObjectList { return &corev1.ServiceList{} }},
	} {
		inf, err := c.GetInformer(ctx, x.obj)
		if err != nil {
			return nil, fmt.Errorf("informer for %T: %w", x.obj, err)
		}
		x.idx.inf, x.idx.reader, x.idx.newList = inf, c, x.newList
		if sii, ok := inf.(toolscache.SharedIndexInformer); ok {
			x.idx.indexer = sii.GetIndexer()
		}
	}
	return cc, nil
}

// Synced reports whether every informer has synced.
func (c *CacheCluster) Synced() bool {
	if c.synced.Load() {
		return true
	}
	for _, i := range []*cacheIndex{&c.namespaces, &c.policies, &c.pods, &c.services} {
		if !i.inf.HasSynced() {
			return false
		}
	}
	c.synced.Store(true)
	return true
}

// WaitForSync waits until every informer has synced or ctx ends, and
// reports whether they have.
func (c *CacheCluster) WaitForSync(ctx context.Context) bool {
	if c.Synced() {
		return true
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return c.Synced()
		case <-t.C:
			if c.Synced() {
				return true
			}
		}
	}
}

// Namespace implements rules.Cluster.
func (c *CacheCluster) Namespace(name string) (*corev1.Namespace, bool) {
	if c.namespaces.indexer != nil {
		o, ok, err := c.namespaces.indexer.GetByKey(name)
		if err != nil || !ok {
			return nil, false
		}
		ns, ok := o.(*corev1.Namespace)
		return ns, ok
	}
	ns := &corev1.Namespace{}
	if err := c.namespaces.reader.Get(context.Background(), client.ObjectKey{Name: name}, ns, &client.GetOptions{}); err != nil {
		return nil, false
	}
	return ns, true
}

// Namespaces implements rules.NamespaceLister: every namespace, by name.
func (c *CacheCluster) Namespaces() []*corev1.Namespace {
	return list[*corev1.Namespace](&c.namespaces, "")
}

// NetworkPolicies implements rules.Cluster; they are sorted by name.
func (c *CacheCluster) NetworkPolicies(namespace string) []*networkingv1.NetworkPolicy {
	return list[*networkingv1.NetworkPolicy](&c.policies, namespace)
}

// Pods implements rules.Cluster; they are sorted by name.
func (c *CacheCluster) Pods(namespace string) []*corev1.Pod {
	return list[*corev1.Pod](&c.pods, namespace)
}

// Services implements rules.Cluster; they are sorted by name.
func (c *CacheCluster) Services(namespace string) []*corev1.Service {
	return list[*corev1.Service](&c.services, namespace)
}

// list returns the cached objects of one namespace ("" for every object of
// a cluster-scoped type), sorted by name, sharing them with the cache.
func list[T client.Object](i *cacheIndex, namespace string) []T {
	var items []any
	var err error
	switch {
	case i.indexer != nil && namespace == "":
		items = i.indexer.List()
	case i.indexer != nil:
		items, err = i.indexer.ByIndex(toolscache.NamespaceIndex, namespace)
	default:
		l := i.newList()
		opts := []client.ListOption{client.UnsafeDisableDeepCopy}
		if namespace != "" {
			opts = append(opts, client.InNamespace(namespace))
		}
		if err := i.reader.List(context.Background(), l, opts...); err != nil {
			return nil
		}
		return fromList[T](l)
	}
	if err != nil || len(items) == 0 {
		return nil
	}
	out := make([]T, 0, len(items))
	for _, it := range items {
		if o, ok := it.(T); ok {
			out = append(out, o)
		}
	}
	slices.SortFunc(out, func(a, b T) int { return cmp.Compare(a.GetName(), b.GetName()) })
	return out
}

func fromList[T client.Object](l client.ObjectList) []T {
	var out []T
	add := func(o any) {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	switch l := l.(type) {
	case *corev1.NamespaceList:
		for i := range l.Items {
			add(&l.Items[i])
		}
	case *networkingv1.NetworkPolicyList:
		for i := range l.Items {
			add(&l.Items[i])
		}
	case *corev1.PodList:
		for i := range l.Items {
			add(&l.Items[i])
		}
	case *corev1.ServiceList:
		for i := range l.Items {
			add(&l.Items[i])
		}
	}
	slices.SortFunc(out, func(a, b T) int { return cmp.Compare(a.GetName(), b.GetName()) })
	return out
}

package rules

import (
	"cmp"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/podwall/podwall/manifest"
)

// Cluster is the read-only view of the cluster the rules consult. The
// returned objects belong to the Cluster and must not be modified.
// Implementations must be safe for concurrent use.
type Cluster interface {
	// Namespace returns a namespace by name, and whether it is known.
	Namespace(name string) (*corev1.Namespace, bool)
	// NetworkPolicies returns the NetworkPolicies of a namespace.
	NetworkPolicies(namespace string) []*networkingv1.NetworkPolicy
	// Pods returns the pods of a namespace.
	Pods(namespace string) []*corev1.Pod
	// Services returns the Services of a namespace.
	Services(namespace string) []*corev1.Service
}

// NamespaceLister is implemented by Clusters that can list every
// namespace. The networkPolicyHygiene rule then also warns about
// namespaceSelectors that match no namespace; without it, it cannot tell.
type NamespaceLister interface {
	Namespaces() []*corev1.Namespace
}

// MemoryCluster is a Cluster held in memory, for offline checks and tests.
// It is safe for concurrent use; changes replace the per-namespace slices
// rather than modify them, so slices already returned stay valid.
type MemoryCluster struct {
	mu         sync.RWMutex
	namespaces map[string]*corev1.Namespace
	policies   map[string][]*networkingv1.NetworkPolicy
	pods       map[string][]*corev1.Pod
	services   map[string][]*corev1.Service
}

var (
	_ Cluster         = (*MemoryCluster)(nil)
	_ NamespaceLister = (*MemoryCluster)(nil)
)

// NewMemoryCluster returns a cluster holding objs (see [MemoryCluster.Set]).
func NewMemoryCluster(objs ...runtime.Object) *MemoryCluster {
	m := &MemoryCluster{
		namespaces: map[string]*corev1.Namespace{},
		policies:   map[string][]*networkingv1.NetworkPolicy{},
		pods:       map[string][]*corev1.Pod{},
		services:   map[string][]*corev1.Service{},
	}
	m.Set(objs...)
	return m
}

// ClusterFromManifests returns the cluster a manifest set describes: its
// Namespaces, Services and NetworkPolicies, its Pods and the pods of its
// workloads (as [manifest.Set.AllPods] expands them).
func ClusterFromManifests(set *manifest.Set) (*MemoryCluster, error) {
	pods, err := set.AllPods()
	if err != nil {
		return nil, err
	}
	if set == nil {
		return NewMemoryCluster(), nil
	}
	objs := make([]runtime.Object, 0, len(set.Namespaces)+len(set.Services)+len(set.NetworkPolicies)+len(pods))
	for _, o := range set.Namespaces {
		objs = append(objs, o)
	}
	for _, o := range set.Services {
		objs = append(objs, o)
	}
	for _, o := range set.NetworkPolicies {
		objs = append(objs, o)
	}
	for _, o := range pods {
		objs = append(objs, o)
	}
	m := NewMemoryCluster(objs...)
	return m, nil
}

// Set adds objects, replacing any with the same namespace and name (the
// last wins among objs). Namespaces, Pods, Services and NetworkPolicies are
// kept; other kinds are ignored. A namespaced object without a namespace
// goes to "default". The cost is that of the namespaces touched, once per
// call, so pass many objects in one call.
func (m *MemoryCluster) Set(objs ...runtime.Object) {
	var (
		policies = map[string][]*networkingv1.NetworkPolicy{}
		pods     = map[string][]*corev1.Pod{}
		services = map[string][]*corev1.Service{}
	)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, obj := range objs {
		switch o := obj.(type) {
		case *corev1.Namespace:
			if o != nil {
				m.namespaces[o.Name] = o
			}
		case *networkingv1.NetworkPolicy:
			if o != nil {
				ns := namespaceOr(o.Namespace)
				policies[ns] = append(policies[ns], o)
			}
		case *corev1.Pod:
			if o != nil {
				ns := namespaceOr(o.Namespace)
				pods[ns] = append(pods[ns], o)
			}
		case *corev1.Service:
			if o != nil {
				ns := namespaceOr(o.Namespace)
				services[ns] = append(services[ns], o)
			}
		}
	}
	for ns, add := range policies {
		m.policies[ns] = upsert(m.policies[ns], add)
	}
	for ns, add := range pods {
		m.pods[ns] = upsert(m.pods[ns], add)
	}
	for ns, add := range services {
		m.services[ns] = upsert(m.services[ns], add)
	}
}

// Delete removes the object of obj's kind, namespace and name, if held.
func (m *MemoryCluster) Delete(obj runtime.Object) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch o := obj.(type) {
	case *corev1.Namespace:
		if o != nil {
			delete(m.namespaces, o.Name)
		}
	case *networkingv1.NetworkPolicy:
		if o != nil {
			ns := namespaceOr(o.Namespace)
			m.policies[ns] = remove(m.policies[ns], o.Name)
		}
	case *corev1.Pod:
		if o != nil {
			ns := namespaceOr(o.Namespace)
			m.pods[ns] = remove(m.pods[ns], o.Name)
		}
	case *corev1.Service:
		if o != nil {
			ns := namespaceOr(o.Namespace)
			m.services[ns] = remove(m.services[ns], o.Name)
		}
	}
}

// Namespace implements Cluster.
func (m *MemoryCluster) Namespace(name string) (*corev1.Namespace, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ns, ok := m.namespaces[name]
	return ns, ok
}

// Namespaces implements NamespaceLister: the namespaces set, by name.
func (m *MemoryCluster) Namespaces() []*corev1.Namespace {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*corev1.Namespace, 0, len(m.namespaces))
	for _, ns := range m.namespaces {
		out = append(out, ns)
	}
	slices.SortFunc(out, func(a, b *corev1.Namespace) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// NetworkPolicies implements Cluster; they are sorted by name.
func (m *MemoryCluster) NetworkPolicies(namespace string) []*networkingv1.NetworkPolicy {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.policies[namespace]
}

// Pods implements Cluster; they are sorted by name.
func (m *MemoryCluster) Pods(namespace string) []*corev1.Pod {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.pods[namespace]
}

// Services implements Cluster; they are sorted by name.
func (m *MemoryCluster) Services(namespace string) []*corev1.Service {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.services[namespace]
}

func namespaceOr(ns string) string {
	if ns == "" {
		return metav1.NamespaceDefault
	}
	return ns
}

// upsert returns a new slice, sorted by name, of list with add in place of
// their namesakes (the last of add winning).
func upsert[T metav1.Object](list, add []T) []T {
	byName := make(map[string]T, len(add))
	for _, o := range add {
		byName[o.GetName()] = o
	}
	out := make([]T, 0, len(list)+len(byName))
	for _, x := range list {
		if _, replaced := byName[x.GetName()]; !replaced {
			out = append(out, x)
		}
	}
	for _, o := range byName {
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b T) int { return cmp.Compare(a.GetName(), b.GetName()) })
	return out
}

func remove[T metav1.Object](list []T, name string) []T {
	return slices.DeleteFunc(slices.Clone(list), func(x T) bool { return x.GetName() == name })
}

// emptyCluster stands in for a nil Cluster.
type emptyCluster struct{}

func (emptyCluster) Namespace(string) (*corev1.Namespace, bool)           { return nil, false }
func (emptyCluster) NetworkPolicies(string) []*networkingv1.NetworkPolicy { return nil }
func (emptyCluster) Pods(string) []*corev1.Pod                            { return nil }
func (emptyCluster) Services(string) []*corev1.Service                    { return nil }

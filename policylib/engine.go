package policylib

import (
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podwall/podwall/policylib/addrset"
)

// NamespaceNameLabel is the label the API server puts on every namespace,
// holding its name; the engine adds it too, so selectors on it work offline.
const NamespaceNameLabel = "kubernetes.io/metadata.name"

// Engine is the compiled view of a cluster's pods, namespaces, nodes,
// Services and NetworkPolicies. Every selector, CIDR and port is parsed once;
// each pod knows the policies that select it and each pod peer knows the pods
// it matches, so [Engine.Decide] is a few bit tests and does not allocate.
// Changes cost in proportion to what they touch, not to the cluster.
//
// The zero Engine is not usable; create one with [NewEngine] or [Build]. An
// Engine is safe for concurrent use.
type Engine struct {
	mu   sync.RWMutex
	opts options

	namespaces map[string]*namespace
	pods       []*pod // indexed by slot; nil for a free slot
	freeSlots  []int32
	podByKey   map[types.NamespacedName]*pod
	podByHash  podIndex        // see lookupPod
	seeds      [2]maphash.Seed // of podByHash's key and of pod.nameCheck
	podByIP    map[netip.Addr]*pod
	nodes      map[string]*node
	nodeByIP   map[netip.Addr]*node
	services   map[types.NamespacedName]*corev1.Service
	policies   map[types.NamespacedName]*policy

	podSets    map[podSetKey]*podSet
	remoteSets map[*podSet]struct{} // the pod sets scoped by a namespaceSelector
	// addrReaders are the policies whose rules read pods outside their pod
	// sets, by address (see readsPodsByAddr), for PoliciesDependingOnPod.
	addrReaders map[*policy]struct{}

	selections map[string]*selection // by selectionKey
	portLists  interner[[]portRule]  // by portsKey
	addrSets   interner[addrset.Set] // by the set's String
	lastSerial uint64                // the last policy serial handed out
}

type namespace struct {
	name     string
	labels   map[string]string
	declared bool // false when only implied by a pod or policy in it
	pods     map[*pod]struct{}
	policies []*policy // sorted by name
	// localSets are the pod sets scoped to this namespace; remoteSets are
	// those scoped by a namespaceSelector that matches it. Together they are
	// every set a pod here can belong to.
	localSets  []*podSet
	remoteSets []*podSet
}

// podSet is the set of pods one (namespace scope, pod selector) pair
// selects. Every policy podSelector and pod peer naming the same pair shares
// one podSet, so a pod change evaluates each distinct selector once, however
// many policies repeat it.
type podSet struct {
	key    podSetKey
	local  *namespace // scope: this namespace; nil when nsSel scopes it
	nsSel  *Selector  // scope: the namespaces it matches
	podSel *Selector  // nil: every pod in scope
	pods   bitset
	refs   int
	// peerOf counts, per policy, its peers that use this set, so a pod
	// change finds the policies it can affect from the sets it is in.
	peerOf map[*policy]int
	// addrs caches the members' addresses for PodRules. Writers hold the
	// engine's lock and drop it; readers under the read lock may race to
	// fill it, with equal values.
	addrs atomic.Pointer[addrset.Set]
}

func (s *podSet) add(id int32) {
	s.pods.set(id)
	s.addrs.Store(nil)
}

func (s *podSet) remove(id int32) {
	if s.pods.has(id) {
		s.pods.clear(id)
		s.addrs.Store(nil)
	}
}

type podSetKey struct {
	namespace string // the local scope, or "" for a namespaceSelector scope
	nsSel     string
	podSel    string
}

func (s *podSet) matchesPod(p *pod) bool {
	return !p.hostNetwork && (s.podSel == nil || s.podSel.Matches(p.labels))
}

// pod is one pod. The fields a decision reads come first, so they share
// a cache line.
type pod struct {
	id          int32
	hostNetwork bool
	// notReady and terminating are what Service resolution reads (its
	// Ready condition is False; it has a deletionTimestamp). Decisions do
	// not: NetworkPolicy judges a pod's traffic whatever its readiness.
	notReady, terminating bool
	nameCheck             uint64        // a second hash of its names, see lookupPod
	sel                   [2]*selection // the policies selecting it per direction; nil: not isolated
	addr                  netip.Addr    // ips[0], kept here so a decision need not load ips
	key                   types.NamespacedName
	ips                   []netip.Addr
	ports                 []namedPort
	ns                    *namespace
	labels                map[string]string
	node                  string
	_                     [24]byte // to 192 bytes, see podSize
}

// policiesIn returns the policies selecting the pod for d, sorted by name.
func (p *pod) policiesIn(d Direction) []*policy {
	if s := p.sel[d]; s != nil {
		return s.policies
	}
	return nil
}

type namedPort struct {
	name  string
	proto Protocol
	port  int32
}

type node struct {
	name  string
	addrs []netip.Addr
}

// Option configures an Engine.
type Option func(*options)

type options struct {
	ipBlockMatchesPods bool
}

// WithIPBlockMatchesPods sets whether an ipBlock peer matches pods by their
// addresses. The API leaves it to the implementation; Calico and the upstream
// e2e suite say yes, which is the default. Cilium-like behaviour is false.
func WithIPBlockMatchesPods(match bool) Option {
	return func(o *options) { o.ipBlockMatchesPods = match }
}

// NewEngine returns an empty engine.
func NewEngine(opts ...Option) *Engine {
	e := &Engine{
		opts:        options{ipBlockMatchesPods: true},
		namespaces:  map[string]*namespace{},
		podByKey:    map[types.NamespacedName]*pod{},
		seeds:       [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		podByIP:     map[netip.Addr]*pod{},
		nodes:       map[string]*node{},
		nodeByIP:    map[netip.Addr]*node{},
		services:    map[types.NamespacedName]*corev1.Service{},
		policies:    map[types.NamespacedName]*policy{},
		podSets:     map[podSetKey]*podSet{},
		remoteSets:  map[*podSet]struct{}{},
		addrReaders: map[*policy]struct{}{},
		selections:  map[string]*selection{},
	}
	for _, o := range opts {
		o(&e.opts)
	}
	return e
}

// Snapshot is a set of cluster objects to build an engine from.
type Snapshot struct {
	Namespaces []*corev1.Namespace
	Nodes      []*corev1.Node
	Pods       []*corev1.Pod
	Services   []*corev1.Service
	Policies   []*networkingv1.NetworkPolicy
}

// Build compiles a snapshot. Every invalid object is reported in the joined
// error (each a *PolicyError or naming the object); the engine holds all the
// valid ones, so callers that must not half-apply check the error first.
func Build(s Snapshot, opts ...Option) (*Engine, error) {
	e := NewEngine(opts...)
	var errs []error
	for i, ns := range s.Namespaces {
		if ns == nil || ns.Name == "" {
			errs = append(errs, fmt.Errorf("namespaces[%d]: missing metadata.name", i))
			continue
		}
		e.SetNamespace(ns)
	}
	for _, n := range s.Nodes {
		if err := e.SetNode(n); err != nil {
			errs = append(errs, err)
		}
	}
	for _, np := range s.Policies {
		if err := e.SetPolicy(np); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range s.Pods {
		if err := e.SetPod(p); err != nil {
			errs = append(errs, err)
		}
	}
	for _, svc := range s.Services {
		if err := e.SetService(svc); err != nil {
			errs = append(errs, err)
		}
	}
	return e, errors.Join(errs...)
}

// ---- namespaces ----

// SetNamespace adds or updates a namespace. Its labels always include
// kubernetes.io/metadata.name, as the API server guarantees.
func (e *Engine) SetNamespace(ns *corev1.Namespace) {
	if ns == nil || ns.Name == "" {
		return // no namespace to hold: Build reports it
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.namespace(ns.Name)
	n.declared = true
	e.relabelNamespace(n, namespaceLabels(ns.Name, ns.Labels))
}

// DeleteNamespace removes a namespace's labels. Pods and policies still in
// it keep it alive as an implied namespace labelled only with its name.
func (e *Engine) DeleteNamespace(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n, ok := e.namespaces[name]
	if !ok {
		return
	}
	n.declared = false
	e.relabelNamespace(n, namespaceLabels(name, nil))
	e.dropIfUnused(n)
}

func namespaceLabels(name string, labels map[string]string) map[string]string {
	out := maps.Clone(labels)
	if out == nil {
		out = map[string]string{}
	}
	out[NamespaceNameLabel] = name
	return out
}

// namespace returns the namespace, creating an implied one.
func (e *Engine) namespace(name string) *namespace {
	if n, ok := e.namespaces[name]; ok {
		return n
	}
	n := &namespace{name: name, labels: namespaceLabels(name, nil), pods: map[*pod]struct{}{}}
	e.namespaces[name] = n
	for s := range e.remoteSets {
		if s.nsSel.Matches(n.labels) {
			n.remoteSets = append(n.remoteSets, s)
		}
	}
	return n
}

func (e *Engine) dropIfUnused(n *namespace) {
	if n.declared || len(n.pods) > 0 || len(n.policies) > 0 {
		return
	}
	delete(e.namespaces, n.name)
}

// relabelNamespace moves the namespace's pods in or out of the pod sets
// whose namespaceSelector changes its mind; the cost is the distinct
// namespaceSelectors plus the pods of the sets that change.
func (e *Engine) relabelNamespace(n *namespace, labels map[string]string) {
	if maps.Equal(n.labels, labels) {
		return
	}
	n.labels = labels
	n.remoteSets = n.remoteSets[:0]
	for s := range e.remoteSets {
		if !s.nsSel.Matches(labels) {
			for p := range n.pods {
				s.remove(p.id)
			}
			continue
		}
		n.remoteSets = append(n.remoteSets, s)
		for p := range n.pods {
			if s.matchesPod(p) {
				s.add(p.id)
			}
		}
	}
}

// ---- nodes ----

// SetNode adds or updates a node and its addresses, so flows from or to a
// node address are reported as that node.
func (e *Engine) SetNode(n *corev1.Node) error {
	if n == nil || n.Name == "" {
		return errors.New("Node: missing metadata.name")
	}
	var addrs []netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err != nil {
			return fmt.Errorf("Node %s: status.addresses: invalid address %q: %w", n.Name, a.Address, err)
		}
		addrs = append(addrs, ip.Unmap())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.deleteNode(n.Name)
	nd := &node{name: n.Name, addrs: addrs}
	e.nodes[n.Name] = nd
	for _, a := range addrs {
		e.nodeByIP[a] = nd
	}
	return nil
}

// DeleteNode forgets a node.
func (e *Engine) DeleteNode(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.deleteNode(name)
}

func (e *Engine) deleteNode(name string) {
	old, ok := e.nodes[name]
	if !ok {
		return
	}
	for _, a := range old.addrs {
		if e.nodeByIP[a] == old {
			delete(e.nodeByIP, a)
		}
	}
	delete(e.nodes, name)
}

// ---- services ----

// SetService adds or updates a Service, used to translate flows to a
// Service into flows to its pods. A Service the API server would reject
// (ValidateService) is an error naming its fields, and leaves the engine
// as it was.
func (e *Engine) SetService(s *corev1.Service) error {
	if s == nil || s.Name == "" || s.Namespace == "" {
		return errors.New("Service: missing metadata.name or metadata.namespace")
	}
	if errs := ValidateService(s); len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, fe := range errs {
			msgs[i] = fe.Error()
		}
		return fmt.Errorf("Service %s/%s: %s", s.Namespace, s.Name, strings.Join(msgs, "; "))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.services[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s.DeepCopy()
	return nil
}

// DeleteService forgets a Service.
func (e *Engine) DeleteService(namespace, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.services, types.NamespacedName{Namespace: namespace, Name: name})
}

// ---- pods ----

// SetPod adds or updates a pod. Pods that have finished (Succeeded or
// Failed) are removed, as they no longer take traffic. The cost is the
// policies of the pod's namespace plus the peers that can match it.
func (e *Engine) SetPod(p *corev1.Pod) error {
	if p == nil || p.Name == "" || p.Namespace == "" {
		return errors.New("Pod: missing metadata.name or metadata.namespace")
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		e.DeletePod(p.Namespace, p.Name)
		return nil
	}
	np, err := newPod(p)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if old, ok := e.podByKey[np.key]; ok {
		if old.sameAs(np) {
			// A status update: nothing a decision reads changed.
			old.notReady, old.terminating = np.notReady, np.terminating
			return nil
		}
		if old.hostNetwork == np.hostNetwork && maps.Equal(old.labels, np.labels) {
			// Same identity for every selector: only addresses and ports move.
			e.unindexIPs(old)
			if !slices.Equal(old.ips, np.ips) {
				for _, set := range old.ns.localSets {
					if set.pods.has(old.id) {
						set.addrs.Store(nil)
					}
				}
				for _, set := range old.ns.remoteSets {
					if set.pods.has(old.id) {
						set.addrs.Store(nil)
					}
				}
			}
			old.ips, old.addr, old.node, old.ports = np.ips, np.addr, np.node, np.ports
			old.notReady, old.terminating = np.notReady, np.terminating
			e.indexIPs(old)
			return nil
		}
		e.removePod(old)
	}
	e.addPod(np)
	return nil
}

// DeletePod removes a pod.
func (e *Engine) DeletePod(namespace, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p, ok := e.podByKey[types.NamespacedName{Namespace: namespace, Name: name}]; ok {
		e.removePod(p)
		e.dropIfUnused(p.ns)
	}
}

func newPod(p *corev1.Pod) (*pod, error) {
	np := &pod{
		key:         types.NamespacedName{Namespace: p.Namespace, Name: p.Name},
		labels:      maps.Clone(p.Labels),
		node:        p.Spec.NodeName,
		hostNetwork: p.Spec.HostNetwork,
		terminating: p.DeletionTimestamp != nil,
		notReady: slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
			return c.Type == corev1.PodReady && c.Status == corev1.ConditionFalse
		}),
	}
	if np.labels == nil {
		np.labels = map[string]string{}
	}
	addIP := func(s, field string) error {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("Pod %s: %s: invalid address %q: %w", np.key, field, s, err)
		}
		ip = ip.Unmap()
		if !slices.Contains(np.ips, ip) {
			np.ips = append(np.ips, ip)
		}
		return nil
	}
	if p.Status.PodIP != "" {
		if err := addIP(p.Status.PodIP, "status.podIP"); err != nil {
			return nil, err
		}
	}
	for i, a := range p.Status.PodIPs {
		if err := addIP(a.IP, fmt.Sprintf("status.podIPs[%d].ip", i)); err != nil {
			return nil, err
		}
	}
	if len(np.ips) > 0 {
		np.addr = np.ips[0]
	}
	addPorts := func(cs []corev1.Container) {
		for _, c := range cs {
			for _, cp := range c.Ports {
				if cp.Name == "" {
					continue
				}
				proto, ok := protocolFromAPI(&cp.Protocol)
				if cp.Protocol == "" {
					proto, ok = TCP, true
				}
				if ok {
					np.ports = append(np.ports, namedPort{name: cp.Name, proto: proto, port: cp.ContainerPort})
				}
			}
		}
	}
	for _, c := range p.Spec.InitContainers {
		// Restartable init containers (sidecars) serve too; plain ones have
		// exited before the pod runs.
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			addPorts([]corev1.Container{c})
		}
	}
	addPorts(p.Spec.Containers)
	return np, nil
}

func (p *pod) hasNamedPort(name string, proto Protocol, port int32) bool {
	for i := range p.ports {
		np := &p.ports[i]
		if np.port == port && np.proto == proto && np.name == name {
			return true
		}
	}
	return false
}

// resolveNamedPort returns the number a named port has on this pod.
func (p *pod) resolveNamedPort(name string, proto Protocol) (int32, bool) {
	for _, np := range p.ports {
		if np.name == name && np.proto == proto {
			return np.port, true
		}
	}
	return 0, false
}

func (e *Engine) addPod(p *pod) {
	if n := len(e.freeSlots); n > 0 {
		p.id = e.freeSlots[n-1]
		e.freeSlots = e.freeSlots[:n-1]
		e.pods[p.id] = p
	} else {
		p.id = int32(len(e.pods))
		e.pods = append(e.pods, p)
	}
	p.ns = e.namespace(p.key.Namespace)
	p.ns.pods[p] = struct{}{}
	e.podByKey[p.key] = p
	h := e.podHash(0, p.key.Namespace, p.key.Name)
	p.nameCheck = e.podHash(1, p.key.Namespace, p.key.Name)
	e.podByHash.add(h, p)
	e.indexIPs(p)
	if p.hostNetwork {
		// A host-network pod shares its node's address: policies neither
		// select it nor match it, as most CNIs treat it as the node.
		return
	}
	for _, set := range p.ns.localSets {
		if set.matchesPod(p) {
			set.add(p.id)
		}
	}
	for _, set := range p.ns.remoteSets {
		if set.matchesPod(p) {
			set.add(p.id)
		}
	}
	var pols [2][]*policy
	for _, pol := range p.ns.policies { // sorted, so appends keep pols sorted
		if pol.selects.pods.has(p.id) {
			for d := range pols {
				if pol.isolates[d] {
					pols[d] = append(pols[d], pol)
				}
			}
		}
	}
	for d := range pols {
		p.sel[d] = e.acquireSelection(Direction(d), pols[d])
	}
}

func (e *Engine) removePod(p *pod) {
	for _, set := range p.ns.localSets {
		set.remove(p.id)
	}
	for _, set := range p.ns.remoteSets {
		set.remove(p.id)
	}
	for d := range p.sel {
		e.releaseSelection(p.sel[d])
		p.sel[d] = nil
	}
	e.unindexIPs(p)
	delete(p.ns.pods, p)
	delete(e.podByKey, p.key)
	e.podByHash.remove(e.podHash(0, p.key.Namespace, p.key.Name), p)
	e.pods[p.id] = nil
	e.freeSlots = append(e.freeSlots, p.id)
}

// podHash hashes a pod's names with one of the engine's two seeds: seed 0
// keys podByHash, seed 1 gives pod.nameCheck.
func (e *Engine) podHash(seed int, namespace, name string) uint64 {
	return maphash.String(e.seeds[seed], namespace)*0x9e3779b97f4a7c15 ^ maphash.String(e.seeds[seed], name)
}

// lookupPod finds a pod by name. Every decision by name starts here, so it
// is one probe of a flat table keyed by a hash of both names (podIndex: no
// string hashing or comparing inside it), and the pod found is confirmed by
// a second, independent hash held in its first cache line rather than by
// comparing the names, whose bytes live elsewhere in memory and would cost
// two more cache misses. Mistaking one pod for another takes both 64-bit
// hashes, under seeds drawn at random per engine, to collide at once.
func (e *Engine) lookupPod(namespace, name string) *pod {
	return e.podByHash.get(e.podHash(0, namespace, name), e.podHash(1, namespace, name))
}

func (e *Engine) indexIPs(p *pod) {
	for _, ip := range p.ips {
		e.podByIP[ip] = p
	}
}

func (e *Engine) unindexIPs(p *pod) {
	for _, ip := range p.ips {
		if e.podByIP[ip] == p {
			delete(e.podByIP, ip)
		}
	}
}

// ---- policies ----

// SetPolicy validates, compiles and adds or replaces a NetworkPolicy. A
// policy the API server would reject returns a *PolicyError and changes
// nothing: a previous valid version stays in force, so an invalid update
// never opens traffic that policy isolated.
func (e *Engine) SetPolicy(np *networkingv1.NetworkPolicy) error {
	if np == nil {
		return errors.New("nil NetworkPolicy")
	}
	pol, err := compilePolicy(np)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if old, ok := e.policies[pol.key]; ok {
		e.removePolicy(old)
	}
	e.addPolicy(pol)
	return nil
}

// HasPolicy reports whether the engine holds a NetworkPolicy of that name
// (SetPolicy refuses an invalid one and keeps the previous version).
func (e *Engine) HasPolicy(namespace, name string) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	_, ok := e.policies[types.NamespacedName{Namespace: namespace, Name: name}]
	return ok
}

// DeletePolicy removes a NetworkPolicy.
func (e *Engine) DeletePolicy(namespace, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if old, ok := e.policies[types.NamespacedName{Namespace: namespace, Name: name}]; ok {
		e.removePolicy(old)
		e.dropIfUnused(old.nsState(e))
	}
}

func (p *policy) nsState(e *Engine) *namespace { return e.namespaces[p.key.Namespace] }

func byPolicyName(a, b *policy) int { return strings.Compare(a.key.Name, b.key.Name) }

func (e *Engine) addPolicy(pol *policy) {
	e.lastSerial++
	pol.serial = e.lastSerial
	e.policies[pol.key] = pol
	n := e.namespace(pol.key.Namespace)
	i, _ := slices.BinarySearchFunc(n.policies, pol, byPolicyName)
	n.policies = slices.Insert(n.policies, i, pol)
	// Peer sets first: the selected pods' checks point into them.
	pol.forEachPodPeer(func(pe *peer) {
		if pe.nsSel == nil {
			pe.set = e.acquireSet(n, nil, pe.podSel)
		} else {
			pe.set = e.acquireSet(nil, pe.nsSel, pe.podSel)
		}
		pe.set.addPeerOf(pol)
	})
	if pol.readsPodsByAddr(e.opts.ipBlockMatchesPods) {
		e.addrReaders[pol] = struct{}{}
	}
	pol.forEachRule(func(r *rule) {
		r.shared = e.portLists.acquire(portsKey(r.ports), r.ports)
		for _, pe := range r.peers {
			if pe.ipBlock {
				pe.sharedAddrs = e.addrSets.acquire(pe.addrs.String(), pe.addrs)
			}
		}
	})
	pol.selects = e.acquireSet(n, nil, &pol.podSel)
	e.moveSelected(pol, true)
}

// moveSelected moves every pod pol selects to the selection with pol added
// (or removed).
func (e *Engine) moveSelected(pol *policy, add bool) {
	// Per direction: a pod no policy selected (nil) moves to a different
	// selection in each.
	moved := [2]map[*selection]*selection{{}, {}}
	pol.selects.pods.forEach(func(id int32) {
		p := e.pods[id]
		for d := range p.sel {
			if pol.isolates[d] {
				p.sel[d] = e.reselect(p.sel[d], Direction(d), pol, add, moved[d])
			}
		}
	})
}

func (e *Engine) removePolicy(pol *policy) {
	delete(e.policies, pol.key)
	n := e.namespaces[pol.key.Namespace]
	n.policies = slices.DeleteFunc(n.policies, func(x *policy) bool { return x == pol })
	e.moveSelected(pol, false)
	e.releaseSet(pol.selects)
	pol.forEachPodPeer(func(pe *peer) {
		pe.set.removePeerOf(pol)
		e.releaseSet(pe.set)
	})
	delete(e.addrReaders, pol)
	pol.forEachRule(func(r *rule) {
		e.portLists.release(portsKey(r.ports))
		for _, pe := range r.peers {
			if pe.ipBlock {
				e.addrSets.release(pe.addrs.String())
			}
		}
	})
}

// acquireSet returns the shared pod set of a scope (local, or nsSel when
// local is nil) and pod selector, computing it the first time.
func (e *Engine) acquireSet(local *namespace, nsSel, podSel *Selector) *podSet {
	if podSel != nil && podSel.Empty() {
		podSel = nil // an empty selector and an omitted one both mean every pod
	}
	key := podSetKey{}
	if podSel != nil {
		key.podSel = podSel.String()
	}
	if local != nil {
		key.namespace = local.name
	} else {
		key.nsSel = "ns:" + nsSel.String()
	}
	if s, ok := e.podSets[key]; ok {
		s.refs++
		return s
	}
	s := &podSet{key: key, local: local, nsSel: nsSel, podSel: podSel, refs: 1}
	e.podSets[key] = s
	fill := func(n *namespace) {
		for p := range n.pods {
			if s.matchesPod(p) {
				s.add(p.id)
			}
		}
	}
	if local != nil {
		local.localSets = append(local.localSets, s)
		fill(local)
		return s
	}
	e.remoteSets[s] = struct{}{}
	for _, n := range e.namespaces {
		if nsSel.Matches(n.labels) {
			n.remoteSets = append(n.remoteSets, s)
			fill(n)
		}
	}
	return s
}

func (e *Engine) releaseSet(s *podSet) {
	if s.refs--; s.refs > 0 {
		return
	}
	delete(e.podSets, s.key)
	drop := func(x *podSet) bool { return x == s }
	if s.local != nil {
		s.local.localSets = slices.DeleteFunc(s.local.localSets, drop)
		return
	}
	delete(e.remoteSets, s)
	for _, n := range e.namespaces {
		if s.nsSel.Matches(n.labels) {
			n.remoteSets = slices.DeleteFunc(n.remoteSets, drop)
		}
	}
}

func (p *policy) forEachRule(fn func(*rule)) {
	for d := range p.rules {
		for i := range p.rules[d] {
			fn(&p.rules[d][i])
		}
	}
}

func (p *policy) forEachPodPeer(fn func(*peer)) {
	for d := range p.rules {
		for _, r := range p.rules[d] {
			for _, pe := range r.peers {
				if !pe.ipBlock {
					fn(pe)
				}
			}
		}
	}
}

// podSize is the size of a pod: 192 bytes, a multiple of the 64-byte cache
// line, so that the allocator (whose 192-byte class starts every object at
// a multiple of 192 from a page) puts each pod's first 56 bytes, all that
// a decision reads of it, in one cache line. At 168 bytes (176 allocated) three pods in
// four had those fields across two lines. TestPodSize keeps it so.
const podSize = 192

package agent

import (
	"maps"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podwall/podwall/enforcer"
	"github.com/podwall/podwall/policylib"
)

// The agent recompiles only the local pods a change can affect (see
// enforcer.Compiler). A local pod's rules (policylib's PodRules) depend on
// the pod itself, on the policies that isolate it, which are all in its
// namespace, and, through those policies' peers, on the labels, addresses
// and named ports of the pods the peers match and on the labels of the
// namespaces their namespaceSelectors match. So:
//
//   - a policy change makes stale the local pods of its namespace;
//   - a pod change makes stale the pod itself and the local pods isolated
//     by a policy with a peer that may match the pod before or after the
//     change;
//   - a namespace relabel makes stale the local pods isolated by a policy
//     with a namespaceSelector that may match the namespace before or
//     after;
//   - a node change affects no pod's rules, only the ruleset's node
//     addresses when it is this node.
//
// "May match" must never say no where policylib would say yes, or a pod
// keeps stale rules until the next periodic resync, which recompiles every
// pod. Selectors are evaluated by policylib's Selector; what is kept here
// is which peers can depend on a pod at all, erring towards yes: a pod
// peer whose namespace scope and pod selector both match the pod's labels
// (host-network pods, which never match, are not excluded); an ipBlock
// whose CIDR holds one of the pod's addresses, which covers ipBlocks that
// exclude pod addresses and named ports resolved on destinations an ipBlock
// reaches (its except is ignored); and, for an egress rule without peers
// that names a port, every pod with an address, since the name resolves on
// whatever destination the traffic goes to. A policylib API that told
// which policies' peers select a pod would replace this.

// podView is what the agent keeps of a pod the engine holds: what
// NetworkPolicy evaluation reads of it, to tell a change that matters from
// a status update and to match it against policies' peers before and after
// a change.
type podView struct {
	namespace   string
	node        string
	labels      map[string]string
	addrs       []netip.Addr
	ports       []corev1.ContainerPort // named, of containers and init containers
	hostNetwork bool
}

func viewOf(p *corev1.Pod) *podView {
	v := &podView{
		namespace:   p.Namespace,
		node:        p.Spec.NodeName,
		labels:      maps.Clone(p.Labels),
		hostNetwork: p.Spec.HostNetwork,
	}
	addAddr := func(s string) {
		if a, err := netip.ParseAddr(s); err == nil && !slices.Contains(v.addrs, a.Unmap()) {
			v.addrs = append(v.addrs, a.Unmap())
		}
	}
	addAddr(p.Status.PodIP)
	for _, a := range p.Status.PodIPs {
		addAddr(a.IP)
	}
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			for _, cp := range c.Ports {
				if cp.Name != "" {
					v.ports = append(v.ports, corev1.ContainerPort{Name: cp.Name, Protocol: cp.Protocol, ContainerPort: cp.ContainerPort})
				}
			}
		}
	}
	return v
}

// same reports whether o and v look the same to NetworkPolicy.
func (v *podView) same(o *podView) bool {
	return o != nil && v.namespace == o.namespace && v.node == o.node && v.hostNetwork == o.hostNetwork &&
		maps.Equal(v.labels, o.labels) && slices.Equal(v.addrs, o.addrs) && slices.Equal(v.ports, o.ports)
}

// peerScope is one peer of a policy that can match pods.
type peerScope struct {
	nsSel  *policylib.Selector // nil: the policy's own namespace
	podSel *policylib.Selector // nil: every pod in scope
}

// policyPeers is what of a policy's peers can depend on other pods and
// namespaces.
type policyPeers struct {
	namespace string
	pods      []peerScope
	blocks    []netip.Prefix
	// anyDest: an egress rule without peers names a port, which resolves
	// on every destination pod.
	anyDest bool
}

// peersOf summarizes a policy the engine accepted.
func peersOf(np *networkingv1.NetworkPolicy) *policyPeers {
	pp := &policyPeers{namespace: np.Namespace}
	var peers []networkingv1.NetworkPolicyPeer
	for _, r := range np.Spec.Ingress {
		peers = append(peers, r.From...)
	}
	for _, r := range np.Spec.Egress {
		peers = append(peers, r.To...)
		if len(r.To) == 0 && slices.ContainsFunc(r.Ports, func(p networkingv1.NetworkPolicyPort) bool {
			return p.Port != nil && p.Port.StrVal != "" // a named port; numeric ones leave StrVal empty
		}) {
			pp.anyDest = true
		}
	}
	for _, pe := range peers {
		if pe.IPBlock != nil {
			if p, err := netip.ParsePrefix(pe.IPBlock.CIDR); err == nil {
				pp.blocks = append(pp.blocks, p.Masked())
			} else {
				// Never happens for a policy the engine accepted; if it
				// did, depend on every address rather than none.
				pp.blocks = append(pp.blocks, netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"))
			}
			continue
		}
		var sc peerScope
		if pe.NamespaceSelector != nil {
			sc.nsSel = selectorOrAll(pe.NamespaceSelector)
		}
		if pe.PodSelector != nil {
			sc.podSel = selectorOrAll(pe.PodSelector)
		}
		pp.pods = append(pp.pods, sc)
	}
	return pp
}

// selectorOrAll compiles a selector; one that does not compile (which the
// engine would have refused) matches everything, so it errs towards
// recompiling.
func selectorOrAll(ls *metav1.LabelSelector) *policylib.Selector {
	s, err := policylib.ParseSelector(ls)
	if err != nil {
		return &policylib.Selector{}
	}
	return &s
}

// mayDependOnPod reports whether the policy's rules may change with pod v
// (as it is, or as it was).
func (pp *policyPeers) mayDependOnPod(v *podView, nsLabels map[string]string) bool {
	if pp.anyDest && len(v.addrs) > 0 {
		return true
	}
	for _, b := range pp.blocks {
		for _, a := range v.addrs {
			if b.Contains(a) {
				return true
			}
		}
	}
	for _, sc := range pp.pods {
		if sc.nsSel == nil && v.namespace != pp.namespace || sc.nsSel != nil && !sc.nsSel.Matches(nsLabels) {
			continue
		}
		if sc.podSel == nil || sc.podSel.Matches(v.labels) {
			return true
		}
	}
	return false
}

// mayDependOnNamespace reports whether the policy's rules may change when
// a namespace's labels go from old to new.
func (pp *policyPeers) mayDependOnNamespace(old, new map[string]string) bool {
	for _, sc := range pp.pods {
		if sc.nsSel != nil && (sc.nsSel.Matches(old) || sc.nsSel.Matches(new)) {
			return true
		}
	}
	return false
}

// deps mirrors what of the cluster the engine holds that the agent needs to
// tell which local pods a change affects. Its methods run with the agent's
// lock held, right after the engine took the change.
type deps struct {
	pods       map[types.NamespacedName]*podView
	namespaces map[string]map[string]string // declared namespaces' labels, as the engine has them
	policies   map[types.NamespacedName]*policyPeers
}

func newDeps() *deps {
	return &deps{
		pods:       map[types.NamespacedName]*podView{},
		namespaces: map[string]map[string]string{},
		policies:   map[types.NamespacedName]*policyPeers{},
	}
}

// nsLabels are a namespace's labels as the engine sees them: a namespace
// that was never declared (or was deleted) is labelled with its name only.
func (d *deps) nsLabels(name string) map[string]string {
	if l, ok := d.namespaces[name]; ok {
		return l
	}
	return map[string]string{policylib.NamespaceNameLabel: name}
}

func namespaceLabels(ns *corev1.Namespace) map[string]string {
	l := maps.Clone(ns.Labels)
	if l == nil {
		l = map[string]string{}
	}
	l[policylib.NamespaceNameLabel] = ns.Name
	return l
}

// podChanged marks stale what a pod going from old to new (either nil)
// affects, and returns how many local pods it marked.
func (d *deps) podChanged(c *enforcer.Compiler, k types.NamespacedName, old, new *podView) int {
	n := c.Invalidate(k)
	memo := map[types.NamespacedName]bool{}
	nsl := d.nsLabels(k.Namespace)
	return n + c.InvalidateIsolatedBy(func(pol types.NamespacedName) bool {
		if hit, ok := memo[pol]; ok {
			return hit
		}
		pp := d.policies[pol]
		// A policy the mirror lacks is one the engine took while the
		// agent was not looking, which cannot happen; err towards yes.
		hit := pp == nil || old != nil && pp.mayDependOnPod(old, nsl) || new != nil && pp.mayDependOnPod(new, nsl)
		memo[pol] = hit
		return hit
	})
}

// namespaceChanged marks stale what a namespace's labels going from old to
// new affects, and returns how many local pods it marked.
func (d *deps) namespaceChanged(c *enforcer.Compiler, old, new map[string]string) int {
	if maps.Equal(old, new) {
		return 0
	}
	return c.InvalidateIsolatedBy(func(pol types.NamespacedName) bool {
		pp := d.policies[pol]
		return pp == nil || pp.mayDependOnNamespace(old, new)
	})
}

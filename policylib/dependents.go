package policylib

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Dependents: which policies' rules a pod or a namespace can change. A
// caller that keeps what PodRules returned (a dataplane compiling the pods
// of its node) asks before a change and after it, and recomputes only the
// pods that the policies named in either answer isolate, plus the changed
// pod itself, whose own rules change with its labels and named ports.
// Asking before catches the peers the pod or namespace leaves, asking after
// those it joins. The index behind the answers is podSet.peerOf and
// Engine.addrReaders, kept by addPolicy and removePolicy.

// PoliciesDependingOnPod returns the policies whose rules, as PodRules
// gives them for the pods the policies isolate, can change when the pod
// changes (its labels, addresses, named ports or host networking) or goes,
// judged on the pod as the engine holds it now. Those are the policies
// with
//
//   - a pod peer whose pod set holds the pod: its addresses are among the
//     peer's, and an egress rule's named ports resolve on it;
//   - an ipBlock peer holding one of its addresses, in any rule when
//     ipBlocks do not match pods (pod addresses are cut out of the
//     blocks), else only in an egress rule naming a port the pod has
//     (the name resolves on the pods a block holds);
//   - an egress rule without peers naming a port the pod has.
//
// A pod the engine does not hold, or without an address, or on the host
// network, is in no peer's addresses: the answer is nil. Otherwise it is
// sorted by namespace and name, each once. It follows set membership,
// addresses and named ports exactly, and errs towards naming a policy (its
// rules turn out the same) only where telling would cost more than
// recomputing: a pod in a peer's set counts whatever the rule's ports, and
// an ipBlock holding its address counts whether or not the address is what
// changes.
//
// The cost is the pod sets scoped to the pod's namespace plus the policies
// with ipBlock peers or named egress ports, not the cluster's pods or
// policies.
func (e *Engine) PoliciesDependingOnPod(namespace, name string) []types.NamespacedName {
	e.mu.RLock()
	defer e.mu.RUnlock()
	p := e.podByKey[types.NamespacedName{Namespace: namespace, Name: name}]
	if p == nil || p.hostNetwork || len(p.ips) == 0 {
		return nil
	}
	var pols []*policy
	for _, sets := range [2][]*podSet{p.ns.localSets, p.ns.remoteSets} {
		for _, s := range sets {
			if len(s.peerOf) > 0 && s.pods.has(p.id) {
				pols = slices.AppendSeq(pols, maps.Keys(s.peerOf))
			}
		}
	}
	for pol := range e.addrReaders {
		if pol.readsPodByAddr(p, e.opts.ipBlockMatchesPods) {
			pols = append(pols, pol)
		}
	}
	return policyNames(pols)
}

// PoliciesDependingOnNamespace returns the policies whose rules, as
// PodRules gives them, can change when the namespace's labels change,
// judged on the namespace as the engine holds it now: those with a
// namespaceSelector peer that matches its labels and whose pod set holds
// one of its pods with an address. It is nil for a namespace without pods,
// and otherwise sorted by namespace and name, each once. Asked before and
// after a relabel, the union holds every policy whose peers gain or lose
// the namespace's pods; it errs towards naming a policy whose peer keeps
// matching the namespace across the relabel.
//
// The cost is the pod sets scoped by a namespaceSelector that matches the
// namespace, each times the namespace's pods at worst (the first member
// found ends the walk).
func (e *Engine) PoliciesDependingOnNamespace(name string) []types.NamespacedName {
	e.mu.RLock()
	defer e.mu.RUnlock()
	n := e.namespaces[name]
	if n == nil || len(n.pods) == 0 {
		return nil
	}
	var pols []*policy
	for _, s := range n.remoteSets {
		if len(s.peerOf) == 0 {
			continue
		}
		for p := range n.pods {
			if len(p.ips) > 0 && s.pods.has(p.id) {
				pols = slices.AppendSeq(pols, maps.Keys(s.peerOf))
				break
			}
		}
	}
	return policyNames(pols)
}

// HoldsPod reports whether the engine holds p as it is, in everything a
// decision reads of a pod: labels, addresses, named ports, node and host
// networking. Then SetPod(p) changes no decision, which is what a status
// update (a condition, a container restarting) usually is; it may still
// change which pods back a Service (ResolveService reads readiness and
// termination). A pod that has finished, or that SetPod would reject, is
// never held.
func (e *Engine) HoldsPod(p *corev1.Pod) bool {
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	np, err := newPod(p)
	if err != nil {
		return false
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	old := e.podByKey[np.key]
	return old != nil && old.sameAs(np)
}

// HoldsNamespace reports whether the namespace has in the engine the labels
// ns gives it (with kubernetes.io/metadata.name, as always), so that
// SetNamespace(ns) changes nothing any selector sees. A namespace the engine
// does not know has its name label only.
func (e *Engine) HoldsNamespace(ns *corev1.Namespace) bool {
	want := namespaceLabels(ns.Name, ns.Labels)
	e.mu.RLock()
	defer e.mu.RUnlock()
	if n, ok := e.namespaces[ns.Name]; ok {
		return maps.Equal(n.labels, want)
	}
	return maps.Equal(namespaceLabels(ns.Name, nil), want)
}

// sameAs reports whether o is p for every selector, peer and named port.
func (p *pod) sameAs(o *pod) bool {
	return p.key == o.key && p.hostNetwork == o.hostNetwork && p.node == o.node &&
		maps.Equal(p.labels, o.labels) && slices.Equal(p.ips, o.ips) && slices.Equal(p.ports, o.ports)
}

func (s *podSet) addPeerOf(pol *policy) {
	if s.peerOf == nil {
		s.peerOf = map[*policy]int{}
	}
	s.peerOf[pol]++
}

func (s *podSet) removePeerOf(pol *policy) {
	if s.peerOf[pol]--; s.peerOf[pol] <= 0 {
		delete(s.peerOf, pol)
	}
}

// readsPodsByAddr reports whether some pod's addresses or named ports can
// enter the policy's rules other than through its pod peers' sets, so that
// PoliciesDependingOnPod must look at it for every pod.
func (pol *policy) readsPodsByAddr(ipBlockMatchesPods bool) bool {
	return pol.readsPodByAddr(nil, ipBlockMatchesPods)
}

// readsPodByAddr reports whether pod p (any pod, when nil) enters the
// policy's rules other than through its pod peers' sets: the ipBlock and
// named-port cases of PoliciesDependingOnPod.
func (pol *policy) readsPodByAddr(p *pod, ipBlockMatchesPods bool) bool {
	for d := range pol.rules {
		for i := range pol.rules[d] {
			r := &pol.rules[d][i]
			// Named ports resolve on the destination: for egress, the peer.
			named := Direction(d) == Egress && slices.ContainsFunc(r.ports, func(pr portRule) bool {
				if pr.name == "" {
					return false
				}
				if p == nil {
					return true
				}
				_, ok := p.resolveNamedPort(pr.name, pr.proto)
				return ok
			})
			if len(r.peers) == 0 {
				if named {
					return true
				}
				continue
			}
			if ipBlockMatchesPods && !named {
				// The blocks enter the rules as written: no pod's
				// address changes them.
				continue
			}
			for _, pe := range r.peers {
				if !pe.ipBlock {
					continue
				}
				if p == nil || slices.ContainsFunc(p.ips, pe.addrs.Contains) {
					return true
				}
			}
		}
	}
	return false
}

// policyNames returns the names of pols sorted by namespace and name, each
// once.
func policyNames(pols []*policy) []types.NamespacedName {
	if len(pols) == 0 {
		return nil
	}
	out := make([]types.NamespacedName, len(pols))
	for i, pol := range pols {
		out[i] = pol.key
	}
	slices.SortFunc(out, func(a, b types.NamespacedName) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return slices.Compact(out)
}

package policylib

import (
	"fmt"
	"net/netip"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podwall/podwall/policylib/addrset"
)

// Direction is the direction a policy rule applies to.
type Direction uint8

// The two directions of a NetworkPolicy. Ingress is the zero value.
const (
	Ingress Direction = iota
	Egress
)

func (d Direction) String() string {
	switch d {
	case Ingress:
		return "ingress"
	case Egress:
		return "egress"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}

// policy is a validated, defaulted NetworkPolicy with every selector, CIDR
// and port parsed once.
type policy struct {
	key      types.NamespacedName
	obj      *networkingv1.NetworkPolicy // defaulted copy
	podSel   Selector
	isolates [2]bool
	rules    [2][]rule
	selects  *podSet // the pods podSel selects; set while the policy is in an engine
	serial   uint64  // unique in its engine, for selection keys; set by addPolicy
}

// rule is one ingress or egress rule. Empty peers means every peer; empty
// ports means every port of every protocol, ICMP included.
type rule struct {
	peers []*peer
	ports []portRule
	// shared is the engine's interned copy of ports; set while the policy
	// is in an engine.
	shared *[]portRule
}

// peer is one NetworkPolicyPeer. A pod peer shares the engine's up-to-date
// set of the pods it matches, so deciding a flow is one bit test.
type peer struct {
	policy *policy
	rule   int
	index  int
	dir    Direction

	ipBlock     bool
	addrs       addrset.Set
	sharedAddrs *addrset.Set // the engine's interned copy of addrs, while in an engine

	nsSel  *Selector // nil: the policy's own namespace
	podSel *Selector // nil: every pod of the selected namespaces
	set    *podSet   // the pods it matches; set while the policy is in an engine
}

type portRule struct {
	proto  Protocol
	lo, hi int32  // inclusive numeric range, when name is empty
	name   string // a named port, resolved on the destination pod
}

// compilePolicy validates, defaults and compiles np.
func compilePolicy(np *networkingv1.NetworkPolicy) (*policy, error) {
	if errs := ValidatePolicy(np); len(errs) > 0 {
		return nil, &PolicyError{Policy: types.NamespacedName{Namespace: np.Namespace, Name: np.Name}, Errs: errs}
	}
	d := DefaultPolicy(np)
	p := &policy{
		key:    types.NamespacedName{Namespace: d.Namespace, Name: d.Name},
		obj:    d,
		podSel: compileSelector(&d.Spec.PodSelector),
	}
	for _, t := range d.Spec.PolicyTypes {
		if t == networkingv1.PolicyTypeEgress {
			p.isolates[Egress] = true
		} else {
			p.isolates[Ingress] = true
		}
	}
	// Rules of a direction the policy does not isolate have no effect, as in
	// the API: keep them out so no pod is matched against them.
	if p.isolates[Ingress] {
		for i, r := range d.Spec.Ingress {
			p.rules[Ingress] = append(p.rules[Ingress], p.compileRule(Ingress, i, r.From, r.Ports))
		}
	}
	if p.isolates[Egress] {
		for i, r := range d.Spec.Egress {
			p.rules[Egress] = append(p.rules[Egress], p.compileRule(Egress, i, r.To, r.Ports))
		}
	}
	return p, nil
}

func (p *policy) compileRule(dir Direction, index int, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) rule {
	var r rule
	for j, np := range peers {
		pe := &peer{policy: p, rule: index, index: j, dir: dir}
		if np.IPBlock != nil {
			pe.ipBlock = true
			// Validation has already checked the CIDRs; an error here would
			// be a bug, and an empty set fails closed.
			pe.addrs, _ = addrset.IPBlock(np.IPBlock.CIDR, np.IPBlock.Except)
		} else {
			if np.NamespaceSelector != nil {
				s := compileSelector(np.NamespaceSelector)
				pe.nsSel = &s
			}
			if np.PodSelector != nil {
				s := compileSelector(np.PodSelector)
				pe.podSel = &s
			}
		}
		r.peers = append(r.peers, pe)
	}
	for _, np := range ports {
		proto, _ := protocolFromAPI(np.Protocol)
		pr := portRule{proto: proto, lo: 0, hi: 65535}
		if np.Port != nil {
			if np.Port.Type == intstr.String {
				pr.name = np.Port.StrVal
				pr.lo, pr.hi = 0, -1
			} else {
				pr.lo, pr.hi = np.Port.IntVal, np.Port.IntVal
				if np.EndPort != nil {
					pr.hi = *np.EndPort
				}
			}
		}
		r.ports = append(r.ports, pr)
	}
	return r
}

// endpoint is a resolved flow end: a pod (pod != nil) with the address the
// flow uses, or a bare address.
type endpoint struct {
	pod  *pod
	addr netip.Addr
}

// Index values in a RuleRef's Peer and Port when the rule lists no peers
// (AnyPeer) or no ports (AnyPort). Not to be confused with Allow's fields of
// the same names, which are booleans.
const (
	AnyPeer = -1
	AnyPort = -1
	noMatch = -2
)

// matchPeer returns the index of the first peer that matches other, AnyPeer
// when the rule has no peers, or noMatch.
func (r *rule) matchPeer(other endpoint, ipBlockMatchesPods bool) int {
	if len(r.peers) == 0 {
		return AnyPeer
	}
	for i, pe := range r.peers {
		if pe.ipBlock {
			if other.addr.IsValid() && (other.pod == nil || ipBlockMatchesPods) && pe.addrs.Contains(other.addr) {
				return i
			}
		} else if other.pod != nil && pe.set.pods.has(other.pod.id) {
			return i
		}
	}
	return noMatch
}

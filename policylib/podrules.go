package policylib

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/types"

	"github.com/podwall/podwall/policylib/addrset"
)

// PortRange is an inclusive range of ports of one protocol.
type PortRange struct {
	Protocol    Protocol
	First, Last int32
}

func (r PortRange) String() string {
	if r.First == r.Last {
		return fmt.Sprintf("%s/%d", r.Protocol, r.First)
	}
	return fmt.Sprintf("%s/%d-%d", r.Protocol, r.First, r.Last)
}

// Allow is one thing a direction of a pod allows: traffic with the peers on
// the ports. Ports are sorted, merged and non-overlapping per protocol.
type Allow struct {
	AnyPeer bool        // every address (a rule without peers)
	Peers   addrset.Set // otherwise: the peers' addresses
	AnyPort bool        // every port of every protocol, ICMP included (a rule without ports)
	Ports   []PortRange // otherwise: these ports; never ICMP
	Rules   []RuleRef   // the rules this allow comes from
}

// DirectionRules is what one direction of a pod allows. When Isolated is
// false everything is allowed and Allows is empty.
type DirectionRules struct {
	Isolated bool
	Policies []types.NamespacedName // the policies that isolate it
	Allows   []Allow
}

// PodRules is the address-level form of the policies that select a pod: what
// a dataplane that sees only addresses, protocols and ports must enforce to
// agree with Decide. Named ports are resolved on the destination (this pod
// for ingress; each peer pod for egress, so one named egress rule may become
// several Allows).
type PodRules struct {
	Pod     types.NamespacedName
	Addrs   []netip.Addr
	Ingress DirectionRules
	Egress  DirectionRules
}

// PodRules returns the address-level rules of one pod. Pods without an
// address take part only as selected pods; host-network pods are never
// isolated.
func (e *Engine) PodRules(namespace, name string) (PodRules, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	p, ok := e.podByKey[types.NamespacedName{Namespace: namespace, Name: name}]
	if !ok {
		return PodRules{}, fmt.Errorf("pod %s/%s: %w", namespace, name, ErrUnknownEndpoint)
	}
	return PodRules{
		Pod:     p.key,
		Addrs:   slices.Clone(p.ips),
		Ingress: e.directionRules(p, Ingress),
		Egress:  e.directionRules(p, Egress),
	}, nil
}

func (e *Engine) directionRules(self *pod, dir Direction) DirectionRules {
	pols := self.policiesIn(dir)
	if len(pols) == 0 {
		return DirectionRules{}
	}
	out := DirectionRules{Isolated: true, Policies: policyKeys(pols)}
	var allows []Allow
	for _, pol := range pols {
		for ri := range pol.rules[dir] {
			ref := RuleRef{Policy: pol.key, Direction: dir, Rule: ri, Peer: AnyPeer, Port: AnyPort}
			allows = append(allows, e.ruleAllows(self, dir, &pol.rules[dir][ri], ref)...)
		}
	}
	out.Allows = mergeAllows(allows)
	return out
}

// ruleAllows turns one rule into Allows: one for its numeric ports (or all
// ports) and, for named ports, one per number the name resolves to.
func (e *Engine) ruleAllows(self *pod, dir Direction, r *rule, ref RuleRef) []Allow {
	var named []portRule
	var numeric []PortRange
	for _, pr := range r.ports {
		if pr.name != "" {
			named = append(named, pr)
		} else {
			numeric = append(numeric, PortRange{Protocol: pr.proto, First: pr.lo, Last: pr.hi})
		}
	}
	anyPeer := len(r.peers) == 0
	var out []Allow
	if len(r.ports) == 0 || len(numeric) > 0 {
		a := Allow{AnyPeer: anyPeer, AnyPort: len(r.ports) == 0, Ports: numeric, Rules: []RuleRef{ref}}
		if !anyPeer {
			a.Peers = e.peerAddrs(r)
		}
		out = append(out, a)
	}
	if len(named) == 0 {
		return out
	}
	if dir == Ingress {
		// This pod is the destination: the names resolve here, for every peer.
		var ports []PortRange
		for _, pr := range named {
			if n, ok := self.resolveNamedPort(pr.name, pr.proto); ok {
				ports = append(ports, PortRange{Protocol: pr.proto, First: n, Last: n})
			}
		}
		if len(ports) > 0 {
			a := Allow{AnyPeer: anyPeer, Ports: ports, Rules: []RuleRef{ref}}
			if !anyPeer {
				a.Peers = e.peerAddrs(r)
			}
			out = append(out, a)
		}
		return out
	}
	// Egress: the names resolve on each destination pod the rule reaches.
	// Destinations that are not pods never match a named port.
	byPort := map[PortRange][]netip.Addr{}
	for _, p := range e.candidateDestinations(r) {
		if p.hostNetwork {
			continue
		}
		for _, ip := range p.ips {
			// Per address: an ipBlock may hold one of a dual-stack pod's
			// addresses and not the other.
			if len(r.peers) > 0 && r.matchPeer(endpoint{pod: p, addr: ip}, e.opts.ipBlockMatchesPods) == noMatch {
				continue
			}
			for _, pr := range named {
				if n, ok := p.resolveNamedPort(pr.name, pr.proto); ok {
					k := PortRange{Protocol: pr.proto, First: n, Last: n}
					byPort[k] = append(byPort[k], ip)
				}
			}
		}
	}
	keys := slices.SortedFunc(maps.Keys(byPort), func(a, b PortRange) int {
		return cmp.Or(cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.First, b.First))
	})
	for _, k := range keys {
		addrs := byPort[k]
		var set addrset.Set
		for _, a := range addrs {
			set = set.Union(addrset.FromPrefix(netip.PrefixFrom(a, a.BitLen())))
		}
		out = append(out, Allow{Peers: set, Ports: []PortRange{k}, Rules: []RuleRef{ref}})
	}
	return out
}

// candidateDestinations returns the pods a rule's peers may match: the
// members of its pod sets when it has only pod peers, else every pod.
func (e *Engine) candidateDestinations(r *rule) []*pod {
	var out []*pod
	onlyPodPeers := len(r.peers) > 0 && !slices.ContainsFunc(r.peers, func(pe *peer) bool { return pe.ipBlock })
	if !onlyPodPeers {
		for _, p := range e.pods {
			if p != nil {
				out = append(out, p)
			}
		}
		return out
	}
	var ids bitset
	for _, pe := range r.peers {
		pe.set.pods.forEach(func(id int32) { ids.set(id) })
	}
	ids.forEach(func(id int32) { out = append(out, e.pods[id]) })
	return out
}

// peerAddrs is the union of the addresses the rule's peers match: ipBlocks
// as written (less pod addresses when ipBlocks must not match pods) and the
// addresses of the pods the pod peers select.
func (e *Engine) peerAddrs(r *rule) addrset.Set {
	var set, pods addrset.Set
	for _, pe := range r.peers {
		if pe.ipBlock {
			set = set.Union(pe.addrs)
		} else {
			pods = pods.Union(e.setAddrs(pe.set))
		}
	}
	if !e.opts.ipBlockMatchesPods && !set.IsEmpty() {
		set = set.Difference(e.allPodAddrs())
	}
	return set.Union(pods)
}

// setAddrs returns the addresses of a pod set's members, cached on the set
// until its membership or a member's addresses change.
func (e *Engine) setAddrs(s *podSet) addrset.Set {
	if c := s.addrs.Load(); c != nil {
		return *c
	}
	var ps []netip.Prefix
	s.pods.forEach(func(id int32) {
		for _, ip := range e.pods[id].ips {
			ps = append(ps, netip.PrefixFrom(ip, ip.BitLen()))
		}
	})
	set := addrset.Of(ps...)
	s.addrs.Store(&set)
	return set
}

func (e *Engine) allPodAddrs() addrset.Set {
	var ps []netip.Prefix
	for _, p := range e.pods {
		if p != nil && !p.hostNetwork {
			for _, ip := range p.ips {
				ps = append(ps, netip.PrefixFrom(ip, ip.BitLen()))
			}
		}
	}
	return addrset.Of(ps...)
}

// mergeAllows puts together allows with the same ports, so a dataplane gets
// one peer set per port set, and normalizes their port ranges.
func mergeAllows(in []Allow) []Allow {
	var out []Allow
	for _, a := range in {
		a.Ports = mergePorts(a.Ports)
		if !a.AnyPeer && a.Peers.IsEmpty() {
			continue
		}
		if !a.AnyPort && len(a.Ports) == 0 {
			continue
		}
		i := slices.IndexFunc(out, func(o Allow) bool { return o.AnyPort == a.AnyPort && slices.Equal(o.Ports, a.Ports) })
		if i < 0 {
			out = append(out, a)
			continue
		}
		o := &out[i]
		o.AnyPeer = o.AnyPeer || a.AnyPeer
		if o.AnyPeer {
			o.Peers = addrset.Set{}
		} else {
			o.Peers = o.Peers.Union(a.Peers)
		}
		o.Rules = append(o.Rules, a.Rules...)
	}
	return out
}

func mergePorts(ps []PortRange) []PortRange {
	if len(ps) == 0 {
		return nil
	}
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b PortRange) int {
		return cmp.Or(cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.First, b.First), cmp.Compare(a.Last, b.Last))
	})
	out := ps[:1]
	for _, p := range ps[1:] {
		last := &out[len(out)-1]
		if p.Protocol == last.Protocol && p.First <= last.Last+1 {
			last.Last = max(last.Last, p.Last)
			continue
		}
		out = append(out, p)
	}
	return out
}

// Permits reports whether the rules let traffic with a peer address through
// on a protocol and port: the check a dataplane makes, here for tests and
// tools that want to compare.
func (d DirectionRules) Permits(peer netip.Addr, proto Protocol, port int32) bool {
	if !d.Isolated {
		return true
	}
	for _, a := range d.Allows {
		if !a.AnyPeer && !a.Peers.Contains(peer) {
			continue
		}
		if a.AnyPort {
			return true
		}
		for _, r := range a.Ports {
			if r.Protocol == proto && r.First <= port && port <= r.Last {
				return true
			}
		}
	}
	return false
}

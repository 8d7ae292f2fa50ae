package policylib

import (
	"encoding/binary"
	"slices"

	"github.com/podwall/podwall/policylib/addrset"
)

// selection is the set of policies that select a pod in one direction, with
// the peers of their rules laid out as one flat list of checks. Pods that
// the same policies select share one selection, so in a real cluster (where
// a Deployment's replicas carry the same labels) a few hundred lists stay
// warm in the cache for thousands of pods, and a policy change rebuilds each
// list once instead of once per pod.
type selection struct {
	key      string
	policies []*policy // sorted by name; never empty
	checks   []peerCheck
	refs     int
}

// peerCheck is one peer of one rule of a selection's policies. The matcher
// and the port list point into the engine's interned copies, so checks that
// many policies repeat read the same memory.
type peerCheck struct {
	bits  *bitset      // a pod peer: its pod set's members
	addrs *addrset.Set // an ipBlock peer; with bits nil too: any peer
	ports *[]portRule  // the rule's ports (empty: every port)
	pol   *policy
	rule  int32
	peer  int32
}

func (c *peerCheck) matches(other endpoint, ipBlockMatchesPods bool) bool {
	switch {
	case c.bits != nil:
		return other.pod != nil && c.bits.has(other.pod.id)
	case c.addrs != nil:
		return other.addr.IsValid() && (other.pod == nil || ipBlockMatchesPods) && c.addrs.Contains(other.addr)
	}
	return true
}

// sameRule reports whether c and o come from the same rule.
func (c *peerCheck) sameRule(o *peerCheck) bool { return c.pol == o.pol && c.rule == o.rule }

// selectionKey identifies a list of policies by their serial numbers (a
// replaced policy gets a new one, so a key never names stale rules).
func selectionKey(dir Direction, pols []*policy) string {
	b := make([]byte, 1, 1+8*len(pols))
	b[0] = byte(dir)
	for _, p := range pols {
		b = binary.LittleEndian.AppendUint64(b, p.serial)
	}
	return string(b)
}

// acquireSelection returns the shared selection for pols (nil when there
// are none: the pod is not isolated), building it the first time.
func (e *Engine) acquireSelection(dir Direction, pols []*policy) *selection {
	if len(pols) == 0 {
		return nil
	}
	key := selectionKey(dir, pols)
	if s, ok := e.selections[key]; ok {
		s.refs++
		return s
	}
	s := &selection{key: key, policies: slices.Clip(pols), refs: 1}
	s.checks = buildChecks(dir, s.policies)
	e.selections[key] = s
	return s
}

func (e *Engine) releaseSelection(s *selection) {
	if s == nil {
		return
	}
	if s.refs--; s.refs == 0 {
		delete(e.selections, s.key)
	}
}

// reselect moves a pod from old to the selection with pol added (or
// removed). moved remembers the answer per old selection, so the pods of one
// selection, which a policy change moves together, build the key once.
func (e *Engine) reselect(old *selection, dir Direction, pol *policy, add bool, moved map[*selection]*selection) *selection {
	s, ok := moved[old]
	if ok {
		if s != nil {
			s.refs++
		}
	} else {
		var pols []*policy
		if old != nil {
			pols = old.policies
		}
		if add {
			i, _ := slices.BinarySearchFunc(pols, pol, byPolicyName)
			pols = slices.Insert(slices.Clone(pols), i, pol)
		} else {
			pols = slices.DeleteFunc(slices.Clone(pols), func(x *policy) bool { return x == pol })
		}
		s = e.acquireSelection(dir, pols)
		moved[old] = s
	}
	e.releaseSelection(old)
	return s
}

// buildChecks lays out the peers of the policies' rules in order (policy
// name, rule, peer), the order that names the allowing rule. A check that
// repeats an earlier one's matcher and ports is left out: if the earlier one
// failed this one fails too, and if it matched the walk stopped there.
func buildChecks(dir Direction, pols []*policy) []peerCheck {
	type dedupKey struct {
		bits  *bitset
		addrs *addrset.Set
		ports *[]portRule
	}
	var checks []peerCheck
	seen := map[dedupKey]bool{}
	add := func(c peerCheck) {
		k := dedupKey{c.bits, c.addrs, c.ports}
		if !seen[k] {
			seen[k] = true
			checks = append(checks, c)
		}
	}
	for _, pol := range pols {
		for ri := range pol.rules[dir] {
			r := &pol.rules[dir][ri]
			if len(r.peers) == 0 {
				add(peerCheck{ports: r.shared, pol: pol, rule: int32(ri), peer: AnyPeer})
			}
			for pi, pe := range r.peers {
				c := peerCheck{ports: r.shared, pol: pol, rule: int32(ri), peer: int32(pi)}
				if pe.ipBlock {
					c.addrs = pe.sharedAddrs
				} else {
					c.bits = &pe.set.pods
				}
				add(c)
			}
		}
	}
	return slices.Clip(checks)
}

// interner shares one copy of equal values (port lists, address sets)
// among the policies that repeat them, counting references.
type interner[T any] struct {
	m map[string]*internEntry[T]
}

type internEntry[T any] struct {
	v    T
	refs int
}

func (in *interner[T]) acquire(key string, v T) *T {
	if in.m == nil {
		in.m = map[string]*internEntry[T]{}
	}
	if x, ok := in.m[key]; ok {
		x.refs++
		return &x.v
	}
	x := &internEntry[T]{v: v, refs: 1}
	in.m[key] = x
	return &x.v
}

func (in *interner[T]) release(key string) {
	if x, ok := in.m[key]; ok {
		if x.refs--; x.refs == 0 {
			delete(in.m, key)
		}
	}
}

// portsKey is the identity of a port list for interning.
func portsKey(ports []portRule) string {
	var b []byte
	for _, p := range ports {
		b = append(b, byte(p.proto))
		b = binary.LittleEndian.AppendUint32(b, uint32(p.lo))
		b = binary.LittleEndian.AppendUint32(b, uint32(p.hi))
		b = append(b, p.name...)
		b = append(b, 0) // names never hold NUL: validation allows IANA service names only
	}
	return string(b)
}

// matchPorts returns the index of the first port entry that allows the
// flow, AnyPort when the list is empty (every port), or noMatch. Named ports
// resolve on dst, the destination pod of the flow (nil when it is not a
// pod, so a named port never matches it).
func matchPorts(ports []portRule, dst *pod, proto Protocol, port int32) int {
	if len(ports) == 0 {
		return AnyPort
	}
	if !proto.HasPorts() {
		return noMatch
	}
	for i := range ports {
		pr := &ports[i]
		if pr.proto != proto {
			continue
		}
		if pr.name == "" {
			if pr.lo <= port && port <= pr.hi {
				return i
			}
		} else if dst != nil && dst.hasNamedPort(pr.name, proto, port) {
			return i
		}
	}
	return noMatch
}

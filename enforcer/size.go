package enforcer

// Size counts what a ruleset puts in the kernel, for metrics and logs. It
// lives beside the layout it counts (see doc.go) so the two change together.
type Size struct {
	// Pods are the local pods with an address; Isolated those with at
	// least one isolated direction.
	Pods, Isolated int
	// Chains are the per-pod chains and their per-port-range chains, Rules
	// the rules in them.
	Chains, Rules int
	// Elements are the peer ranges (an interval counted once), the
	// port-map entries and the dispatch verdict-map entries.
	Elements int
	// Conflicts are addresses claimed by several local pods with rules.
	Conflicts int
}

// Size counts the ruleset: per pod and isolated direction, one chain with
// per address family an any-port lookup, the port-map dispatch and a final
// drop; per port range one chain with a peer lookup per family and a drop.
func (r *Ruleset) Size() Size {
	var s Size
	if r == nil {
		return s
	}
	s.Pods = len(r.Pods)
	s.Conflicts = len(r.Conflicts)
	for i := range r.Pods {
		p := &r.Pods[i]
		if p.Ingress == nil && p.Egress == nil {
			continue
		}
		s.Isolated++
		v4, v6 := false, false
		dispatched := 0
		for _, a := range p.Addrs {
			if a.Is4() {
				v4 = true
			} else {
				v6 = true
			}
			if q, ok := r.Pod(a); ok && q.Pod == p.Pod {
				dispatched++
			}
		}
		fams := 0
		for _, has := range []bool{v4, v6} {
			if has {
				fams++
			}
		}
		for _, rules := range []*Rules{p.Ingress, p.Egress} {
			if rules == nil {
				continue
			}
			s.Chains += 1 + len(rules.Ports)
			s.Rules += fams + 2 + len(rules.Ports)*(fams+1)
			s.Elements += dispatched + len(rules.Ports)
			s.Elements += ranges(rules, v4, v6)
		}
	}
	return s
}

func ranges(r *Rules, v4, v6 bool) int {
	n := 0
	if v4 {
		n += len(r.Any.IPv4().Ranges())
	}
	if v6 {
		n += len(r.Any.IPv6().Ranges())
	}
	for _, p := range r.Ports {
		if v4 {
			n += len(p.Peers.IPv4().Ranges())
		}
		if v6 {
			n += len(p.Peers.IPv6().Ranges())
		}
	}
	return n
}

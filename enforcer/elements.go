package enforcer

import (
	"net/netip"

	"github.com/podwall/podwall/policylib"
	"github.com/podwall/podwall/policylib/addrset"
)

// elem is one kernel set element. Address interval sets (kept in an rbtree)
// hold a start element per range and, unless the range runs to the
// family's last address, an end element at the address after it. The port
// maps (concatenated intervals, kept by pipapo) hold one element per port
// range with an inclusive key and key end, mapping it to a goto. The
// dispatch maps map an address to a jump.
type elem struct {
	key, keyEnd []byte
	end         bool   // rbtree interval end
	chain       string // map: the verdict's chain
	goTo        bool   // map: goto rather than jump
}

// splitFamilies returns the IPv4 and the IPv6 ranges of s.
func splitFamilies(s addrset.Set) (v4, v6 []addrset.Range) {
	rs := s.Ranges()
	i := 0
	for i < len(rs) && rs[i].From.Is4() {
		i++
	}
	return rs[:i:i], rs[i:]
}

func familyRanges(s addrset.Set, v6 bool) []addrset.Range {
	v4r, v6r := splitFamilies(s)
	if v6 {
		return v6r
	}
	return v4r
}

// diffRanges returns the ranges of old that new lacks and those of new that
// old lacks; both are sorted and disjoint. A range that changed in any way
// is deleted whole and added whole: deleting its start and end before
// adding the new ones keeps the rbtree's starts and ends alternating at
// every step, which the kernel's overlap checks need.
func diffRanges(old, new []addrset.Range) (del, add []addrset.Range) {
	i, j := 0, 0
	for i < len(old) && j < len(new) {
		switch c := old[i].From.Compare(new[j].From); {
		case c == 0 && old[i].To == new[j].To:
			i++
			j++
		case c <= 0:
			del = append(del, old[i])
			i++
		default:
			add = append(add, new[j])
			j++
		}
	}
	return append(del, old[i:]...), append(add, new[j:]...)
}

// portMapElem is the port-map element sending p's protocol and range to
// chain.
func portMapElem(p *PortRule, chain string) elem {
	proto := protoNumber(p.Protocol)
	return elem{
		key:    []byte{proto, 0, 0, 0, byte(p.First >> 8), byte(p.First), 0, 0},
		keyEnd: []byte{proto, 0, 0, 0, byte(p.Last >> 8), byte(p.Last), 0, 0},
		chain:  chain,
		goTo:   true,
	}
}

func protoNumber(p policylib.Protocol) byte {
	switch p {
	case policylib.UDP:
		return 17
	case policylib.SCTP:
		return 132
	}
	return 6
}

func protoName(p policylib.Protocol) string {
	switch p {
	case policylib.UDP:
		return "udp"
	case policylib.SCTP:
		return "sctp"
	}
	return "tcp"
}

// samePorts reports whether two port rules cover the same protocol and
// range, so they share a chain.
func samePorts(a, b *PortRule) bool {
	return a.Protocol == b.Protocol && a.First == b.First && a.Last == b.Last
}

// comparePorts orders port rules as Rules.Ports is sorted: by protocol
// (TCP, UDP, SCTP) then port.
func comparePorts(a, b *PortRule) int {
	if pa, pb := protoOrder(a.Protocol), protoOrder(b.Protocol); pa != pb {
		return pa - pb
	}
	return int(a.First) - int(b.First)
}

func protoOrder(p policylib.Protocol) int {
	switch p {
	case policylib.TCP:
		return 0
	case policylib.UDP:
		return 1
	}
	return 2
}

// mapEntry is a dispatch-map entry: a local pod's address and its chain.
type mapEntry struct {
	addr  netip.Addr
	chain string
}

// mapEntries lists a dispatch map's entries in Pods order.
func mapEntries(r *Ruleset, dir policylib.Direction, v6 bool) []mapEntry {
	var out []mapEntry
	for i := range r.Pods {
		p := &r.Pods[i]
		if p.rules(dir) == nil {
			continue
		}
		chain := ""
		for _, a := range p.Addrs {
			if a.Is6() == v6 && r.dispatched(i, a) {
				if chain == "" {
					chain = chainName(dir, p.Pod)
				}
				out = append(out, mapEntry{a, chain})
			}
		}
	}
	return out
}

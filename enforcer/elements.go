package enforcer

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/podwall/podwall/policylib"
	"github.com/podwall/podwall/policylib/addrset"
)

// elem is one kernel set element. Interval sets of one field (the any-port
// sets, kept in an rbtree) hold a start element per range and, unless the
// range runs to the family's last address, an end element at the address
// after it. Concatenated interval sets (the port sets, kept by pipapo) hold
// one element with an inclusive key and key end. Verdict maps map a key to
// a jump.
type elem struct {
	key, keyEnd []byte
	end         bool   // rbtree interval end
	chain       string // verdict map: jump target
}

// id identifies an element for diffing: two elements with equal ids are
// the same kernel object.
func (e elem) id() string {
	b := make([]byte, 0, len(e.key)+len(e.keyEnd)+len(e.chain)+3)
	b = append(b, e.key...)
	b = append(b, 0)
	b = append(b, e.keyEnd...)
	if e.end {
		b = append(b, 1)
	}
	b = append(b, 0)
	b = append(b, e.chain...)
	return string(b)
}

func (e elem) nft() nftables.SetElement {
	se := nftables.SetElement{Key: e.key, KeyEnd: e.keyEnd, IntervalEnd: e.end}
	if e.chain != "" {
		se.VerdictData = &expr.Verdict{Kind: expr.VerdictJump, Chain: e.chain}
	}
	return se
}

// anyElems encodes the ranges of one family of s for an rbtree interval set.
func anyElems(s addrset.Set, v6 bool) []elem {
	rs := familyRanges(s, v6)
	out := make([]elem, 0, 2*len(rs))
	for _, r := range rs {
		out = append(out, elem{key: r.From.AsSlice()})
		if next := r.To.Next(); next.IsValid() {
			out = append(out, elem{key: next.AsSlice(), end: true})
		}
	}
	return out
}

// portElems encodes the port rules of one family as (address . protocol .
// port) ranges.
func portElems(r *Rules, v6 bool) []elem {
	var out []elem
	for _, p := range r.Ports {
		proto := protoNumber(p.Protocol)
		for _, rg := range familyRanges(p.Peers, v6) {
			out = append(out, elem{
				key:    concatKey(rg.From, proto, p.First),
				keyEnd: concatKey(rg.To, proto, p.Last),
			})
		}
	}
	return out
}

// concatKey lays out address . inet_proto . inet_service as the kernel
// compares it: each field padded to 4 bytes, the port big-endian.
func concatKey(a netip.Addr, proto byte, port uint16) []byte {
	k := a.AsSlice()
	return append(k, proto, 0, 0, 0, byte(port>>8), byte(port), 0, 0)
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

func mapElems(r *Ruleset, dir policylib.Direction, v6 bool) []elem {
	entries := mapEntries(r, dir, v6)
	out := make([]elem, len(entries))
	for i, e := range entries {
		out[i] = elem{key: e.addr.AsSlice(), chain: e.chain}
	}
	return out
}

func sortEntries(es []mapEntry) {
	slices.SortFunc(es, func(a, b mapEntry) int { return cmp.Or(a.addr.Compare(b.addr), cmp.Compare(a.chain, b.chain)) })
}

// diffElems returns the elements of old missing from new and of new
// missing from old.
func diffElems(old, new []elem) (del, add []elem) {
	ids := make(map[string]bool, len(old))
	for _, e := range old {
		ids[e.id()] = true
	}
	for _, e := range new {
		id := e.id()
		if ids[id] {
			delete(ids, id)
			continue
		}
		add = append(add, e)
	}
	for _, e := range old {
		if ids[e.id()] {
			del = append(del, e)
		}
	}
	return del, add
}

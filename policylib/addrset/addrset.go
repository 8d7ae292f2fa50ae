package addrset

import (
	"net/netip"
	"slices"
	"strings"
)

// Range is the inclusive range [From, To] of addresses of one family.
type Range struct{ From, To netip.Addr }

// valid reports whether r could appear in a Set: both ends of one family and
// in order. Zero or hand-built Ranges may not be.
func (r Range) valid() bool {
	return r.From.IsValid() && r.To.IsValid() && r.From.Is4() == r.To.Is4() && r.From.Compare(r.To) <= 0
}

// Prefix returns the prefix r is exactly, if it is one. An nftables interval
// set stores such a range more compactly as a prefix element.
func (r Range) Prefix() (netip.Prefix, bool) {
	if !r.valid() {
		return netip.Prefix{}, false
	}
	k, last := firstBlock(r.From, r.To)
	if last != r.To {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(r.From, r.From.BitLen()-k), true
}

// String returns "from-to", or the prefix form when r is exactly one prefix
// so that the common case reads like the CIDR a user wrote.
func (r Range) String() string {
	if p, ok := r.Prefix(); ok {
		return p.String()
	}
	return r.From.String() + "-" + r.To.String()
}

// Set is an immutable set of IPv4 and IPv6 addresses: sorted, merged,
// non-overlapping, non-adjacent ranges. The zero Set is empty and ready to
// use. IPv4-mapped IPv6 addresses are treated as IPv4 (Unmap) everywhere;
// IPv6 ranges leave the mapped block out, so "::/0" matches no IPv4 address.
//
// Both families share one slice: netip.Addr.Compare orders every IPv4
// address before every IPv6 one, and no range spans the two, so a single
// sorted slice keeps every operation a linear merge.
type Set struct{ ranges []Range }

// The IPv4-mapped block ::ffff:0.0.0.0/96. Sets never hold these addresses
// as IPv6: a mapped address means the IPv4 address it embeds, so a range
// given entirely in mapped form becomes IPv4, and an IPv6 range that merely
// spans the block (such as ::/0) leaves it out. Moving that part to IPv4
// instead would make "::/0" match every IPv4 address, which Kubernetes does
// not do and which would fail open.
var (
	mappedFirst = netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff})
	mappedLast  = netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: 0xff, 13: 0xff, 14: 0xff, 15: 0xff})
)

// canon strips what makes equal addresses compare unequal: the IPv4-mapped
// form and IPv6 zones (a zone names an interface, not a different address).
func canon(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

// appendPrefix appends the ranges of p. Its ends are not unmapped one by
// one: "::/80" ends at ::ffff:255.255.255.255, yet it is an IPv6 prefix.
func appendPrefix(dst []Range, p netip.Prefix) []Range {
	if !p.IsValid() {
		return dst
	}
	p = p.Masked()
	return appendRange(dst, p.Addr(), prefixLast(p))
}

// appendRange appends [from, to] to dst, which must be valid, zone-free,
// of one family and in order, dropping the IPv4-mapped block from IPv6
// ranges and turning a range wholly inside it into IPv4. dst is left
// unsorted.
func appendRange(dst []Range, from, to netip.Addr) []Range {
	if from.Is4() || to.Less(mappedFirst) || mappedLast.Less(from) {
		return append(dst, Range{from, to})
	}
	if mappedFirst.Compare(from) <= 0 && to.Compare(mappedLast) <= 0 {
		return append(dst, Range{from.Unmap(), to.Unmap()})
	}
	if from.Less(mappedFirst) {
		dst = append(dst, Range{from, mappedFirst.Prev()})
	}
	if mappedLast.Less(to) {
		dst = append(dst, Range{mappedLast.Next(), to})
	}
	return dst
}

// build sorts and merges arbitrary ranges produced by appendRange.
func build(rs []Range) Set {
	slices.SortFunc(rs, func(a, b Range) int { return a.From.Compare(b.From) })
	out := rs[:0]
	for _, r := range rs {
		out = appendMerged(out, r)
	}
	return Set{slices.Clip(out)}
}

// appendMerged appends r, which must not start before the last range of dst,
// coalescing it with that range when they overlap or touch. It writes to the
// last element of dst, so dst must never alias a Set's ranges.
func appendMerged(dst []Range, r Range) []Range {
	if n := len(dst); n > 0 {
		last := &dst[n-1]
		// Next of a family's last address is the zero Addr, which never
		// equals a valid From, so ranges never merge across families.
		if r.From.Compare(last.To) <= 0 || r.From == last.To.Next() {
			if last.To.Less(r.To) {
				last.To = r.To
			}
			return dst
		}
	}
	return append(dst, r)
}

// prefixLast returns the last address of p, which must be masked.
func prefixLast(p netip.Prefix) netip.Addr {
	a := p.Addr()
	return u128(a).or(lowMask(a.BitLen() - p.Bits())).addr(a.Is4())
}

// FromPrefix returns the set of addresses in p.Masked(). An invalid prefix
// gives the empty set.
func FromPrefix(p netip.Prefix) Set {
	return build(appendPrefix(nil, p))
}

// FromRange returns the set of addresses in [from, to]. It is empty if from
// is after to, either is invalid, or they are of different families (after
// unmapping IPv4-mapped addresses).
func FromRange(from, to netip.Addr) Set {
	if !from.IsValid() || !to.IsValid() {
		return Set{}
	}
	from, to = canon(from), canon(to)
	if from.Is4() != to.Is4() || to.Less(from) {
		return Set{}
	}
	return build(appendRange(nil, from, to))
}

// Of returns the union of prefixes; invalid prefixes are ignored.
func Of(prefixes ...netip.Prefix) Set {
	rs := make([]Range, 0, len(prefixes))
	for _, p := range prefixes {
		rs = appendPrefix(rs, p)
	}
	return build(rs)
}

// Union returns the addresses in s or o.
func (s Set) Union(o Set) Set {
	a, b := s.ranges, o.ranges
	if len(a) == 0 {
		return o
	}
	if len(b) == 0 {
		return s
	}
	out := make([]Range, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if a[0].From.Compare(b[0].From) <= 0 {
			out = appendMerged(out, a[0])
			a = a[1:]
		} else {
			out = appendMerged(out, b[0])
			b = b[1:]
		}
	}
	for _, r := range a {
		out = appendMerged(out, r)
	}
	for _, r := range b {
		out = appendMerged(out, r)
	}
	return finish(out)
}

// finish trims the worst-case capacity an operation reserved, because
// compiled policies keep their sets for a long time.
func finish(out []Range) Set {
	if len(out) == 0 {
		return Set{}
	}
	if len(out) < cap(out)/2 {
		return Set{slices.Clone(out)}
	}
	return Set{slices.Clip(out)}
}

// Difference returns the addresses in s and not in o.
func (s Set) Difference(o Set) Set {
	if len(s.ranges) == 0 || len(o.ranges) == 0 {
		return s
	}
	b := o.ranges
	out := make([]Range, 0, len(s.ranges)+len(b))
	for _, r := range s.ranges {
		for len(b) > 0 && b[0].To.Less(r.From) {
			b = b[1:]
		}
		cur, covered := r.From, false
		for i := 0; i < len(b) && b[i].From.Compare(r.To) <= 0; i++ {
			if cur.Less(b[i].From) {
				out = append(out, Range{cur, b[i].From.Prev()})
			}
			if b[i].To.Compare(r.To) >= 0 {
				// b[i] may reach into later ranges of s, so keep it.
				covered = true
				break
			}
			cur = b[i].To.Next()
		}
		if !covered {
			out = append(out, Range{cur, r.To})
		}
	}
	return finish(out)
}

// Intersect returns the addresses in both s and o. Pieces of two canonical
// sets can never touch, so the result needs no merging.
func (s Set) Intersect(o Set) Set {
	a, b := s.ranges, o.ranges
	if len(a) == 0 || len(b) == 0 {
		return Set{}
	}
	out := make([]Range, 0, len(a)+len(b)-1)
	for len(a) > 0 && len(b) > 0 {
		from, to := a[0].From, a[0].To
		if from.Less(b[0].From) {
			from = b[0].From
		}
		if b[0].To.Less(to) {
			to = b[0].To
		}
		if from.Compare(to) <= 0 {
			out = append(out, Range{from, to})
		}
		if a[0].To.Less(b[0].To) {
			a = a[1:]
		} else {
			b = b[1:]
		}
	}
	return finish(out)
}

// Contains reports whether a is in s. It does not allocate, because it sits
// on the per-packet and per-flow paths of the policy engine.
func (s Set) Contains(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = canon(a)
	rs := s.ranges
	lo, hi := 0, len(rs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if rs[m].To.Less(a) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo < len(rs) && rs[lo].From.Compare(a) <= 0
}

// ContainsSet reports whether every address of o is in s. Because ranges of
// s never touch, each range of o must fit inside a single range of s.
func (s Set) ContainsSet(o Set) bool {
	a := s.ranges
	for _, r := range o.ranges {
		for len(a) > 0 && a[0].To.Less(r.From) {
			a = a[1:]
		}
		if len(a) == 0 || r.From.Less(a[0].From) || a[0].To.Less(r.To) {
			return false
		}
	}
	return true
}

// Overlaps reports whether s and o share an address.
func (s Set) Overlaps(o Set) bool {
	a, b := s.ranges, o.ranges
	for len(a) > 0 && len(b) > 0 {
		switch {
		case a[0].To.Less(b[0].From):
			a = a[1:]
		case b[0].To.Less(a[0].From):
			b = b[1:]
		default:
			return true
		}
	}
	return false
}

// IsEmpty reports whether s has no addresses.
func (s Set) IsEmpty() bool { return len(s.ranges) == 0 }

// Equal reports whether s and o hold the same addresses. The representation
// is canonical, so this is a slice comparison.
func (s Set) Equal(o Set) bool { return slices.Equal(s.ranges, o.ranges) }

// Ranges returns the ranges of s in ascending order, IPv4 first. The slice is
// a copy the caller may modify.
func (s Set) Ranges() []Range { return slices.Clone(s.ranges) }

// Prefixes returns the fewest prefixes that cover exactly s, in ascending
// order. Each range is split greedily into the largest aligned blocks, which
// is minimal because prefixes nest.
func (s Set) Prefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, r := range s.ranges {
		for cur := r.From; ; {
			k, last := firstBlock(cur, r.To)
			out = append(out, netip.PrefixFrom(cur, cur.BitLen()-k))
			if last == r.To {
				break
			}
			cur = last.Next()
		}
	}
	return out
}

// firstIPv6 returns the index of the first IPv6 range.
func (s Set) firstIPv6() int {
	rs := s.ranges
	lo, hi := 0, len(rs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if rs[m].From.Is4() {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// IPv4 returns the IPv4 part of s. It shares memory with s, which is safe
// because sets are never modified.
func (s Set) IPv4() Set {
	k := s.firstIPv6()
	if k == 0 {
		return Set{}
	}
	return Set{s.ranges[:k:k]}
}

// IPv6 returns the IPv6 part of s, sharing memory with s.
func (s Set) IPv6() Set {
	k := s.firstIPv6()
	if k == len(s.ranges) {
		return Set{}
	}
	return Set{s.ranges[k:]}
}

// String returns the ranges of s in braces, e.g.
// "{10.0.0.0/8, 192.168.0.0-192.168.0.5}", or "{}" when s is empty.
func (s Set) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, r := range s.ranges {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(r.String())
	}
	b.WriteByte('}')
	return b.String()
}

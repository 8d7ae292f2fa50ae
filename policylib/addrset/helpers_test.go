package addrset_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/podwall/podwall/policylib/addrset"
)

// set builds a Set from specs that are either a prefix ("10.0.0.0/8", host
// bits allowed) or an inclusive range ("10.0.0.1-10.0.0.5").
func set(specs ...string) addrset.Set {
	var s addrset.Set
	for _, spec := range specs {
		if from, to, ok := strings.Cut(spec, "-"); ok {
			s = s.Union(addrset.FromRange(netip.MustParseAddr(from), netip.MustParseAddr(to)))
			continue
		}
		s = s.Union(addrset.FromPrefix(netip.MustParsePrefix(spec)))
	}
	return s
}

// checkInvariant fails t unless s is in canonical form: every range of one
// family, ordered, unmapped and zone-free, and ranges strictly apart with a
// gap between them.
func checkInvariant(t testing.TB, what string, s addrset.Set) {
	t.Helper()
	mappedBlock := netip.MustParsePrefix("::ffff:0:0/96")
	rs := s.Ranges()
	for i, r := range rs {
		if !r.From.IsValid() || !r.To.IsValid() {
			t.Fatalf("%s: range %d %v has an invalid end", what, i, r)
		}
		if r.From.Is4() != r.To.Is4() {
			t.Fatalf("%s: range %d %v mixes families", what, i, r)
		}
		if r.To.Less(r.From) {
			t.Fatalf("%s: range %d %v is reversed", what, i, r)
		}
		if r.From.Zone() != "" || r.To.Zone() != "" {
			t.Fatalf("%s: range %d %v has a zone", what, i, r)
		}
		if r.From.Is6() && !(r.To.Less(mappedBlock.Addr()) || lastAddr(mappedBlock).Less(r.From)) {
			t.Fatalf("%s: range %d %v holds IPv4-mapped addresses", what, i, r)
		}
		if i > 0 {
			prev := rs[i-1]
			if !prev.To.Less(r.From) {
				t.Fatalf("%s: ranges %v and %v overlap or are out of order", what, prev, r)
			}
			if prev.To.Next() == r.From {
				t.Fatalf("%s: ranges %v and %v are adjacent", what, prev, r)
			}
		}
	}
	if s.IsEmpty() != (len(rs) == 0) {
		t.Fatalf("%s: IsEmpty = %v with %d ranges", what, s.IsEmpty(), len(rs))
	}
}

// lastAddr returns the last address of p, computed bit by bit so it shares
// no code with the package.
func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	a := p.Addr()
	if a.Is4() {
		b := a.As4()
		for i := p.Bits(); i < 32; i++ {
			b[i/8] |= 0x80 >> (i % 8)
		}
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	for i := p.Bits(); i < 128; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom16(b)
}

// addN returns a advanced by n addresses, saturating at the family's end.
func addN(a netip.Addr, n int) netip.Addr {
	for ; n > 0; n-- {
		next := a.Next()
		if !next.IsValid() {
			break
		}
		a = next
	}
	return a
}

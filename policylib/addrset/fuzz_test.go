package addrset_test

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/podwall/podwall/policylib/addrset"
)

var parseSeeds = []string{
	"10.0.0.0/8", "192.168.2.5/24", "0.0.0.0/0", "255.255.255.255/32", "1.2.3.4/0",
	"::/0", "::1/128", "2001:db8::/32", "2001:0db8::1/64", "::1.2.3.4/128", "ffff::/16",
	"", "/", "10.0.0.0", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/08", "010.0.0.0/8",
	"10.0.0.0/+8", "10.0.0.0/-0", "fe80::1%eth0/64", "fe80::%/64", "::ffff:10.0.0.0/104",
	"::ffff:0:0/96", "::ffff:1.2.3.4/64", "10.0.0.0/8/8", "1.2.3.4/99999999999999999999",
	"::ffff:01.2.3.4/128", "1.2.3.4/3\x00", "\xff/8",
}

func FuzzParsePrefix(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := addrset.ParsePrefix(s)
		nonCanon := addrset.NonCanonical(s)
		if err != nil {
			var ce *addrset.CIDRError
			if !errors.As(err, &ce) || ce.Value != s || !strings.HasPrefix(err.Error(), "invalid CIDR "+strconv.Quote(s)+": ") {
				t.Fatalf("ParsePrefix(%q) error %q does not wrap the input", s, err)
			}
			if p.IsValid() {
				t.Fatalf("ParsePrefix(%q) returned %v with error %v", s, p, err)
			}
			if nonCanon {
				t.Fatalf("NonCanonical(%q) = true for an unparsable CIDR", s)
			}
			return
		}
		// Strict parsing accepts a subset of netip's grammar with the same
		// meaning.
		q, err := netip.ParsePrefix(s)
		if err != nil {
			t.Fatalf("ParsePrefix(%q) = %v but netip rejects it: %v", s, p, err)
		}
		if q.Masked() != p {
			t.Fatalf("ParsePrefix(%q) = %v, netip gives %v masked", s, p, q.Masked())
		}
		if nonCanon != (q != q.Masked()) {
			t.Fatalf("NonCanonical(%q) = %v for %v", s, nonCanon, q)
		}
		if p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			t.Fatalf("ParsePrefix(%q) = %v is not canonical", s, p)
		}
		back, err := addrset.ParsePrefix(p.String())
		if err != nil || back != p {
			t.Fatalf("ParsePrefix(%q) = %v does not round-trip: %v, %v", s, p, back, err)
		}
		if addrset.NonCanonical(p.String()) {
			t.Fatalf("NonCanonical(%q) = true for a masked prefix", p)
		}
	})
}

func FuzzIPBlock(f *testing.F) {
	f.Add("10.0.0.0/16", "10.0.1.0/24", uint64(0))
	f.Add("10.0.0.0/24", "10.0.0.0/32,10.0.0.255/32", uint64(1))
	f.Add("10.0.0.0/16", "10.0.0.0/16", uint64(2))
	f.Add("10.0.0.0/16", "::/128", uint64(3))
	f.Add("10.0.0.0/16", "10.1.0.0/24", uint64(4))
	f.Add("0.0.0.0/0", "0.0.0.0/1,128.0.0.0/1", uint64(5))
	f.Add("::/0", "::/1,::ffff:0:0/97", uint64(6))
	f.Add("2001:db8::/32", "2001:db8::/33,2001:db8:8000::/48", uint64(7))
	f.Add("192.168.2.5/24", "192.168.2.7/30,", uint64(8))
	f.Add("fe80::/10", "fe80::1%eth0/64", uint64(9))
	f.Fuzz(func(t *testing.T, cidr, exceptList string, seed uint64) {
		var except []string
		if exceptList != "" {
			except = strings.Split(exceptList, ",")
		}
		s, err := addrset.IPBlock(cidr, except)
		checkInvariant(t, "IPBlock", s)
		if err != nil {
			if !s.IsEmpty() {
				t.Fatalf("IPBlock(%q, %q) failed open: %v with %v", cidr, except, s, err)
			}
			var ce *addrset.CIDRError
			var ee *addrset.ExceptError
			switch {
			case errors.As(err, &ce):
				if ce.Value != cidr {
					t.Fatalf("CIDRError for %q, want %q", ce.Value, cidr)
				}
			case errors.As(err, &ee):
				if ee.Index < 0 || ee.Index >= len(except) || ee.Value != except[ee.Index] ||
					!strings.Contains(err.Error(), strconv.Quote(ee.Value)) {
					t.Fatalf("ExceptError %+v does not name an except of %q", *ee, except)
				}
			default:
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		c, err := netip.ParsePrefix(cidr)
		if err != nil {
			t.Fatalf("IPBlock accepted cidr %q that netip rejects: %v", cidr, err)
		}
		c = c.Masked()
		var ex []netip.Prefix
		for _, e := range except {
			p, err := netip.ParsePrefix(e)
			if err != nil {
				t.Fatalf("IPBlock accepted except %q that netip rejects: %v", e, err)
			}
			p = p.Masked()
			if p.Addr().Is4() != c.Addr().Is4() || p.Bits() <= c.Bits() || !c.Contains(p.Addr()) {
				t.Fatalf("IPBlock accepted except %v that is not strictly inside %v", p, c)
			}
			ex = append(ex, p)
		}
		if !addrset.FromPrefix(c).ContainsSet(s) {
			t.Fatalf("IPBlock(%q, %q) = %v is not inside the cidr", cidr, except, s)
		}
		want := func(a netip.Addr) bool {
			// A mapped address is its IPv4 address, which no IPv6 cidr
			// holds even when the cidr spans the mapped block.
			a = a.Unmap()
			if !c.Contains(a) {
				return false
			}
			for _, e := range ex {
				if e.Contains(a) {
					return false
				}
			}
			return true
		}
		// Sample the edges, where off-by-one bugs live, and random addresses
		// inside the cidr.
		samples := []netip.Addr{c.Addr(), lastAddr(c), c.Addr().Prev(), lastAddr(c).Next()}
		samples = append(samples, mappedEdges...)
		for _, e := range ex {
			samples = append(samples, e.Addr(), e.Addr().Prev(), lastAddr(e), lastAddr(e).Next())
		}
		r := rand.New(rand.NewPCG(seed, seed>>7))
		for range 32 {
			samples = append(samples, randomIn(r, c))
		}
		for _, a := range samples {
			if !a.IsValid() {
				continue
			}
			if got := s.Contains(a); got != want(a) {
				t.Fatalf("IPBlock(%q, %q) = %v: Contains(%v) = %v, want %v", cidr, except, s, a, got, want(a))
			}
		}
	})
}

// randomIn returns a random address of p.
func randomIn(r *rand.Rand, p netip.Prefix) netip.Addr {
	if p.Addr().Is4() {
		b := p.Addr().As4()
		for i := p.Bits(); i < 32; i++ {
			if r.IntN(2) == 1 {
				b[i/8] |= 0x80 >> (i % 8)
			}
		}
		return netip.AddrFrom4(b)
	}
	b := p.Addr().As16()
	for i := p.Bits(); i < 128; i++ {
		if r.IntN(2) == 1 {
			b[i/8] |= 0x80 >> (i % 8)
		}
	}
	return netip.AddrFrom16(b)
}

// fuzzBases are the places where boundary bugs would hide: the ends of each
// family and both sides of the IPv4-mapped block.
var fuzzBases = []netip.Addr{
	ma("0.0.0.0"), ma("10.0.0.0"), ma("255.255.255.0"), ma("::"),
	ma("2001:db8::"), ma("::fffe:ffff:ff00"), ma("::ffff:0.0.0.0"), ma("::1:0:0:0"),
	ma("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00"), ma("::ffff:255.255.255.0"),
}

// mappedEdges are the addresses on both sides of the IPv4-mapped block.
var mappedEdges = []netip.Addr{
	ma("::fffe:ffff:ffff"), ma("::ffff:0.0.0.0"), ma("::ffff:0.0.0.1"),
	ma("::ffff:255.255.255.254"), ma("::ffff:255.255.255.255"), ma("::1:0:0:0"),
}

// prefixHas is the model of FromPrefix(p).Contains(x): a mapped x is its
// IPv4 address, and an IPv6 prefix holds it only if the prefix lies inside
// the mapped block.
func prefixHas(p netip.Prefix, x netip.Addr) bool {
	p, x = p.Masked(), x.WithZone("").Unmap()
	if !p.IsValid() || !x.IsValid() {
		return false
	}
	if p.Addr().Is4() || x.Is6() {
		return p.Contains(x)
	}
	return p.Bits() >= 96 && p.Contains(netip.AddrFrom16(x.As16()))
}

// rangeHas is the model of FromRange(from, to).Contains(x).
func rangeHas(from, to, x netip.Addr) bool {
	from, to, x = from.WithZone("").Unmap(), to.WithZone("").Unmap(), x.WithZone("").Unmap()
	if !from.IsValid() || !to.IsValid() || !x.IsValid() || from.Is4() != to.Is4() || from.Is4() != x.Is4() {
		return false
	}
	return from.Compare(x) <= 0 && x.Compare(to) <= 0
}

// decoded is a set built from fuzz input together with an independent
// model of its membership and the addresses its pieces start and end at.
type decoded struct {
	set   addrset.Set
	has   func(netip.Addr) bool
	edges []netip.Addr
}

// decodeSet consumes data four bytes at a time, each chunk adding or
// removing a prefix or range near one of fuzzBases, until a 0xff op.
func decodeSet(data []byte) (decoded, []byte) {
	d := decoded{has: func(netip.Addr) bool { return false }}
	for len(data) >= 4 {
		op, x, y, z := data[0], data[1], data[2], data[3]
		data = data[4:]
		if op == 0xff {
			break
		}
		base := fuzzBases[int(op>>4)%len(fuzzBases)]
		from := addN(base, int(y))
		var piece addrset.Set
		var pieceHas func(netip.Addr) bool
		addPrefix := func(p netip.Prefix) {
			piece = addrset.FromPrefix(p)
			pieceHas = func(a netip.Addr) bool { return prefixHas(p, a) }
			d.edges = append(d.edges, p.Masked().Addr(), lastAddr(p))
		}
		addRange := func(from, to netip.Addr) {
			piece = addrset.FromRange(from, to)
			pieceHas = func(a netip.Addr) bool { return rangeHas(from, to, a) }
			d.edges = append(d.edges, from, to)
		}
		switch op & 3 {
		case 0:
			addPrefix(netip.PrefixFrom(from, base.BitLen()-int(x)%(base.BitLen()+1)))
		case 1:
			addRange(from, addN(from, int(z)))
		case 2:
			// Ends near two different bases: may span the mapped block,
			// cross families or be reversed.
			addRange(from, addN(fuzzBases[int(x)%len(fuzzBases)], int(z)))
		case 3:
			addPrefix(netip.PrefixFrom(from, base.BitLen()-int(x)%9))
		}
		prev := d.has
		if op&4 != 0 {
			d.set = d.set.Difference(piece)
			d.has = func(a netip.Addr) bool { return prev(a) && !pieceHas(a) }
		} else {
			d.set = d.set.Union(piece)
			d.has = func(a netip.Addr) bool { return prev(a) || pieceHas(a) }
		}
	}
	return d, data
}

func FuzzSetOps(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x10, 8, 0, 0, 0xff, 0, 0, 0, 0x10, 0, 5, 0})
	f.Add([]byte{0x00, 32, 0, 0, 0x30, 128, 0, 0, 0xff, 0, 0, 0, 0x31, 0, 5, 9, 0x12, 3, 250, 10})
	f.Add([]byte{0x32, 8, 0, 0, 0x56, 0, 0, 0, 0xff, 0, 0, 0, 0x62, 7, 255, 255, 0x80, 0, 0, 0})
	f.Add([]byte{0x20, 0, 255, 0, 0x01, 0, 0, 255, 0xff, 0, 0, 0, 0x21, 0, 0, 0, 0x42, 9, 3, 4})
	f.Add([]byte{0x30, 1, 0, 0, 0x34, 96, 0, 0, 0x72, 3, 1, 1, 0xff, 0, 0, 0, 0x93, 4, 200, 0})
	f.Add([]byte{0x30, 48, 0, 0}) // ::/80, which ends inside the mapped block
	f.Fuzz(func(t *testing.T, data []byte) {
		da, rest := decodeSet(data)
		db, _ := decodeSet(rest)
		a, b := da.set, db.set
		union, diff, inter := a.Union(b), a.Difference(b), a.Intersect(b)
		for _, c := range []struct {
			what string
			s    addrset.Set
		}{{"a", a}, {"b", b}, {"a∪b", union}, {"a∖b", diff}, {"a∩b", inter}, {"b∖a", b.Difference(a)}, {"a.IPv4", a.IPv4()}, {"a.IPv6", a.IPv6()}} {
			checkInvariant(t, c.what, c.s)
		}
		if !union.Equal(b.Union(a)) || !inter.Equal(b.Intersect(a)) {
			t.Fatalf("union or intersection not commutative for %v, %v", a, b)
		}
		if !diff.Union(inter).Equal(a) || diff.Overlaps(b) || !union.Difference(b).Equal(diff) {
			t.Fatalf("difference identities fail for %v, %v: a∖b = %v, a∩b = %v", a, b, diff, inter)
		}
		if !union.ContainsSet(a) || !union.ContainsSet(b) || !a.ContainsSet(inter) || !a.ContainsSet(diff) {
			t.Fatalf("containment identities fail for %v, %v", a, b)
		}
		if a.Overlaps(b) == inter.IsEmpty() || a.ContainsSet(b) != b.Difference(a).IsEmpty() {
			t.Fatalf("Overlaps/ContainsSet disagree with ∩/∖ for %v, %v", a, b)
		}
		if !a.IPv4().Union(a.IPv6()).Equal(a) || a.IPv4().Overlaps(a.IPv6()) {
			t.Fatalf("family split of %v is wrong", a)
		}
		ps := a.Prefixes()
		if !addrset.Of(ps...).Equal(a) {
			t.Fatalf("Of(%v.Prefixes()) = %v", a, addrset.Of(ps...))
		}
		for i := 1; i < len(ps); i++ {
			if !lastAddr(ps[i-1]).Less(ps[i].Addr()) {
				t.Fatalf("%v.Prefixes() not sorted or overlapping: %v", a, ps)
			}
		}
		var samples []netip.Addr
		for _, s := range []addrset.Set{a, b} {
			for _, r := range s.Ranges() {
				samples = append(samples, r.From, r.To, r.From.Prev(), r.To.Next())
			}
		}
		for _, e := range append(da.edges, db.edges...) {
			samples = append(samples, e, e.Prev(), e.Next())
		}
		samples = append(samples, mappedEdges...)
		for _, base := range fuzzBases {
			samples = append(samples, base, base.Prev())
		}
		for _, x := range samples {
			if !x.IsValid() {
				continue
			}
			inA, inB := a.Contains(x), b.Contains(x)
			if inA != da.has(x) || inB != db.has(x) {
				t.Fatalf("Contains(%v) = %v, %v; model says %v, %v for a = %v, b = %v", x, inA, inB, da.has(x), db.has(x), a, b)
			}
			if x.Is4() && (inA != a.Contains(netip.AddrFrom16(x.As16()))) {
				t.Fatalf("%v: Contains differs for %v and its mapped form", a, x)
			}
			if union.Contains(x) != (inA || inB) || diff.Contains(x) != (inA && !inB) || inter.Contains(x) != (inA && inB) {
				t.Fatalf("membership of %v wrong in ops on %v, %v", x, a, b)
			}
		}
	})
}

package addrset_test

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/podwall/podwall/policylib/addrset"
)

// The differential test confines random sets to two 256-address universes,
// small enough to enumerate, and checks every operation against a plain map.
var universes = []netip.Prefix{mp("10.1.2.0/24"), mp("2001:db8::/120")}

// refSet is the obviously correct model: the set of member addresses.
type refSet map[netip.Addr]bool

// probeAddrs lists every address of the universes plus the neighbours just
// outside them and the IPv4-mapped spelling of the IPv4 ones.
func probeAddrs() []netip.Addr {
	var out []netip.Addr
	for _, u := range universes {
		out = append(out, u.Addr().Prev(), lastAddr(u).Next())
		for a := u.Addr(); u.Contains(a); a = a.Next() {
			out = append(out, a)
			if a.Is4() {
				out = append(out, netip.AddrFrom16(a.As16()))
			}
		}
	}
	return out
}

// randomSet returns a random set inside the universes and its model.
func randomSet(r *rand.Rand) (addrset.Set, refSet) {
	var s addrset.Set
	ref := refSet{}
	for range r.IntN(5) {
		u := universes[r.IntN(len(universes))]
		width := u.Addr().BitLen()
		base := u.Addr()
		var piece addrset.Set
		if r.IntN(2) == 0 {
			bits := width - r.IntN(9) // /24../32 or /120../128
			p := netip.PrefixFrom(addN(base, r.IntN(256)), bits)
			piece = addrset.FromPrefix(p)
			if r.IntN(2) == 0 {
				piece = addrset.Of(p, netip.PrefixFrom(addN(base, r.IntN(256)), width-r.IntN(9)))
			}
		} else {
			from := addN(base, r.IntN(256))
			to := addN(from, r.IntN(64))
			if last := lastAddr(u); last.Less(to) {
				to = last
			}
			piece = addrset.FromRange(from, to)
		}
		for _, rg := range piece.Ranges() {
			for a := rg.From; a.Compare(rg.To) <= 0; a = a.Next() {
				ref[a] = true
			}
		}
		if r.IntN(4) == 0 {
			// Build some sets by subtraction too, so not every input is
			// a plain union.
			s = s.Difference(piece)
			for a := range ref {
				if piece.Contains(a) {
					delete(ref, a)
				}
			}
			continue
		}
		s = s.Union(piece)
	}
	return s, ref
}

func (m refSet) has(a netip.Addr) bool { return m[a.Unmap()] }

// ranges returns the maximal runs of members, scanning each universe in order.
func (m refSet) ranges() []addrset.Range {
	var out []addrset.Range
	for _, u := range universes {
		var cur *addrset.Range
		for a := u.Addr(); u.Contains(a); a = a.Next() {
			switch {
			case !m[a]:
				cur = nil
			case cur == nil:
				out = append(out, addrset.Range{From: a, To: a})
				cur = &out[len(out)-1]
			default:
				cur.To = a
			}
		}
	}
	return out
}

// prefixes returns the minimal exact prefix cover: the maximal prefixes whole
// inside the set, found top-down from each universe.
func (m refSet) prefixes() []netip.Prefix {
	var out []netip.Prefix
	var walk func(p netip.Prefix)
	walk = func(p netip.Prefix) {
		all, any := true, false
		for a := p.Addr(); p.Contains(a); a = a.Next() {
			all = all && m[a]
			any = any || m[a]
		}
		switch {
		case all:
			out = append(out, p)
		case any:
			left := netip.PrefixFrom(p.Addr(), p.Bits()+1)
			walk(left)
			walk(netip.PrefixFrom(lastAddr(left).Next(), p.Bits()+1))
		}
	}
	for _, u := range universes {
		walk(u)
	}
	return out
}

func combine(a, b refSet, keep func(x, y bool) bool) refSet {
	out := refSet{}
	for _, u := range universes {
		for x := u.Addr(); u.Contains(x); x = x.Next() {
			if keep(a[x], b[x]) {
				out[x] = true
			}
		}
	}
	return out
}

func checkAgainst(t *testing.T, what string, s addrset.Set, ref refSet, probes []netip.Addr) {
	t.Helper()
	checkInvariant(t, what, s)
	for _, a := range probes {
		if got, want := s.Contains(a), ref.has(a); got != want {
			t.Fatalf("%s = %v: Contains(%v) = %v, want %v", what, s, a, got, want)
		}
	}
	if got, want := s.Ranges(), ref.ranges(); !slices.Equal(got, want) {
		t.Fatalf("%s: Ranges() = %v, want %v", what, got, want)
	}
	if got, want := s.Prefixes(), ref.prefixes(); !slices.Equal(got, want) {
		t.Fatalf("%s = %v: Prefixes() = %v, want %v", what, s, got, want)
	}
	if got, want := s.IsEmpty(), len(ref) == 0; got != want {
		t.Fatalf("%s = %v: IsEmpty() = %v", what, s, got)
	}
	v4, v6 := s.IPv4(), s.IPv6()
	for _, a := range probes {
		if v4.Contains(a) != (ref.has(a) && a.Unmap().Is4()) || v6.Contains(a) != (ref.has(a) && a.Unmap().Is6()) {
			t.Fatalf("%s = %v: IPv4()/IPv6() disagree at %v", what, s, a)
		}
	}
}

func TestDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	probes := probeAddrs()
	iterations := 1000
	if testing.Short() {
		iterations = 300
	}
	for i := range iterations {
		a, refA := randomSet(r)
		b, refB := randomSet(r)
		checkAgainst(t, "a", a, refA, probes)
		checkAgainst(t, "b", b, refB, probes)
		union := combine(refA, refB, func(x, y bool) bool { return x || y })
		diff := combine(refA, refB, func(x, y bool) bool { return x && !y })
		inter := combine(refA, refB, func(x, y bool) bool { return x && y })
		checkAgainst(t, "a∪b", a.Union(b), union, probes)
		checkAgainst(t, "a∖b", a.Difference(b), diff, probes)
		checkAgainst(t, "b∖a", b.Difference(a), combine(refB, refA, func(x, y bool) bool { return x && !y }), probes)
		checkAgainst(t, "a∩b", a.Intersect(b), inter, probes)

		bInA := len(combine(refB, refA, func(x, y bool) bool { return x && !y })) == 0
		aInB := len(diff) == 0
		if got := a.ContainsSet(b); got != bInA {
			t.Fatalf("iteration %d: %v.ContainsSet(%v) = %v, want %v", i, a, b, got, bInA)
		}
		if got, want := a.Overlaps(b), len(inter) > 0; got != want {
			t.Fatalf("iteration %d: %v.Overlaps(%v) = %v, want %v", i, a, b, got, want)
		}
		if got, want := a.Equal(b), aInB && bInA; got != want {
			t.Fatalf("iteration %d: %v.Equal(%v) = %v, want %v", i, a, b, got, want)
		}
	}
}

// TestIPBlockDifferential checks IPBlock, errors included, against the
// Kubernetes rule applied address by address.
func TestIPBlockDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	probes := probeAddrs()
	var ok, failed int
	for range 2000 {
		u := universes[r.IntN(len(universes))]
		width := u.Addr().BitLen()
		randPrefix := func(minBits int) netip.Prefix {
			return netip.PrefixFrom(addN(u.Addr(), r.IntN(256)), minBits+r.IntN(width-minBits+1))
		}
		cidr := randPrefix(width - 8)
		var except []string
		var exceptPs []netip.Prefix
		wantErr := -2
		for i := range r.IntN(4) {
			e := randPrefix(width - 7)
			if r.IntN(20) == 0 {
				other := universes[1-slices.Index(universes, u)].Addr()
				e = netip.PrefixFrom(addN(other, r.IntN(256)), other.BitLen()-r.IntN(8))
			}
			except = append(except, e.String())
			exceptPs = append(exceptPs, e.Masked())
			strict := e.Addr().Is4() == cidr.Addr().Is4() && e.Bits() > cidr.Bits() && cidr.Masked().Contains(e.Addr())
			if !strict && wantErr == -2 {
				wantErr = i
			}
		}
		s, err := addrset.IPBlock(cidr.String(), except)
		if wantErr >= 0 {
			if err == nil {
				t.Fatalf("IPBlock(%v, %q) = %v, want error at except[%d]", cidr, except, s, wantErr)
			}
			var ee *addrset.ExceptError
			if !errors.As(err, &ee) || ee.Index != wantErr {
				t.Fatalf("IPBlock(%v, %q) error %v, want it at except[%d]", cidr, except, err, wantErr)
			}
			failed++
			continue
		}
		if err != nil {
			t.Fatalf("IPBlock(%v, %q): %v", cidr, except, err)
		}
		ref := refSet{}
		for _, a := range probes {
			a = a.Unmap()
			if !cidr.Masked().Contains(a) {
				continue
			}
			ref[a] = !slices.ContainsFunc(exceptPs, func(e netip.Prefix) bool { return e.Contains(a) })
			if !ref[a] {
				delete(ref, a)
			}
		}
		checkAgainst(t, "IPBlock", s, ref, probes)
		ok++
	}
	// Guard against a generator that only ever exercises one path.
	if ok < 500 || failed < 500 {
		t.Fatalf("only %d successful and %d failing IPBlock calls", ok, failed)
	}
}

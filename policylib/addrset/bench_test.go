package addrset_test

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/podwall/podwall/policylib/addrset"
)

// benchSet returns n ranges of 24 addresses every 64 addresses from 10.0.0.0
// shifted by offset, so two sets with different offsets partly overlap.
func benchSet(n, offset int) addrset.Set {
	ps := make([]addrset.Set, n)
	start := addN(ma("10.0.0.0"), offset)
	for i := range n {
		ps[i] = addrset.FromRange(start, addN(start, 23))
		start = addN(start, 64)
	}
	// Pairwise unions keep setup near-linear.
	for len(ps) > 1 {
		var next []addrset.Set
		for i := 0; i < len(ps); i += 2 {
			if i+1 < len(ps) {
				next = append(next, ps[i].Union(ps[i+1]))
			} else {
				next = append(next, ps[i])
			}
		}
		ps = next
	}
	return ps[0]
}

func TestBenchSet(t *testing.T) {
	if n := len(benchSet(1000, 0).Ranges()); n != 1000 {
		t.Fatalf("benchSet has %d ranges, want 1000", n)
	}
}

func BenchmarkContains(b *testing.B) {
	s := benchSet(1000, 0)
	r := rand.New(rand.NewPCG(1, 1))
	addrs := make([]netip.Addr, 1024)
	for i := range addrs {
		addrs[i] = addN(ma("10.0.0.0"), r.IntN(64*1000))
	}
	b.ReportAllocs()
	b.ResetTimer()
	hits := 0
	for i := 0; b.Loop(); i++ {
		if s.Contains(addrs[i&1023]) {
			hits++
		}
	}
	_ = hits
}

func BenchmarkUnion(b *testing.B) {
	x, y := benchSet(1000, 0), benchSet(1000, 16)
	b.ReportAllocs()
	for b.Loop() {
		_ = x.Union(y)
	}
}

func BenchmarkDifference(b *testing.B) {
	x, y := benchSet(1000, 0), benchSet(1000, 16)
	b.ReportAllocs()
	for b.Loop() {
		_ = x.Difference(y)
	}
}

func BenchmarkIntersect(b *testing.B) {
	x, y := benchSet(1000, 0), benchSet(1000, 16)
	b.ReportAllocs()
	for b.Loop() {
		_ = x.Intersect(y)
	}
}

func BenchmarkIPBlock(b *testing.B) {
	except := []string{"10.0.1.0/24", "10.0.7.0/24", "10.0.200.0/22", "10.0.255.255/32"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := addrset.IPBlock("10.0.0.0/16", except); err != nil {
			b.Fatal(err)
		}
	}
}

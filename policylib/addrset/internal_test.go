package addrset

import (
	"net/netip"
	"testing"
)

func TestFirstBlock(t *testing.T) {
	tests := []struct {
		from, to, last string
		k              int
	}{
		{"0.0.0.0", "255.255.255.255", "255.255.255.255", 32},
		{"0.0.0.0", "255.255.255.254", "127.255.255.255", 31},
		{"0.0.0.1", "255.255.255.255", "0.0.0.1", 0},
		{"128.0.0.0", "255.255.255.255", "255.255.255.255", 31},
		{"10.0.0.4", "10.0.0.100", "10.0.0.7", 2},
		{"10.0.0.0", "10.0.0.0", "10.0.0.0", 0},
		{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 128},
		{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 127},
		{"::1:0:0:0", "::ffff:ffff:ffff:ffff", "::1:ffff:ffff:ffff", 48},
		{"0:0:0:1::", "ffff::", "0:0:0:1:ffff:ffff:ffff:ffff", 64},
		{"::", "0:0:0:1::", "::ffff:ffff:ffff:ffff", 64},
	}
	for _, tt := range tests {
		k, last := firstBlock(netip.MustParseAddr(tt.from), netip.MustParseAddr(tt.to))
		if k != tt.k || last != netip.MustParseAddr(tt.last) {
			t.Errorf("firstBlock(%s, %s) = %d, %v; want %d, %s", tt.from, tt.to, k, last, tt.k, tt.last)
		}
	}
}

func TestLowMask(t *testing.T) {
	for n := 0; n <= 128; n++ {
		m := lowMask(n)
		if m.bitLen() != n || m.trailingZeros(128) != 0 && n > 0 {
			t.Errorf("lowMask(%d) = %#x", n, m)
		}
		if n < 128 && (uint128{}).sub(m).sub(uint128{lo: 1}).bitLen() != 128 && n > 0 {
			t.Errorf("lowMask(%d) arithmetic is off", n)
		}
	}
	if got := (uint128{}).sub(uint128{lo: 1}); got != lowMask(128) {
		t.Errorf("0-1 = %#x", got)
	}
	if got := (uint128{hi: 1}).sub(uint128{lo: 1}); got != lowMask(64) {
		t.Errorf("2^64-1 = %#x", got)
	}
}

func TestMappedCanonical(t *testing.T) {
	// Canonical form never keeps a mapped range as IPv6, so the slice
	// comparison in Equal is enough.
	a := FromPrefix(netip.MustParsePrefix("::ffff:10.0.0.0/104"))
	b := FromPrefix(netip.MustParsePrefix("10.0.0.0/8"))
	if !a.Equal(b) {
		t.Errorf("%v != %v", a, b)
	}
	for _, r := range FromPrefix(netip.MustParsePrefix("::/0")).ranges {
		if r.From.Is4In6() || r.To.Is4In6() {
			t.Errorf("mapped end in %v", r)
		}
	}
}

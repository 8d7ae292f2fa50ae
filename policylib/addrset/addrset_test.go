package addrset_test

import (
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/podwall/podwall/policylib/addrset"
)

var (
	ma = netip.MustParseAddr
	mp = netip.MustParsePrefix
)

func TestRangeString(t *testing.T) {
	tests := []struct {
		from, to, want string
	}{
		{"10.0.0.0", "10.0.0.255", "10.0.0.0/24"},
		{"10.0.0.0", "10.0.0.254", "10.0.0.0-10.0.0.254"},
		{"10.0.0.1", "10.0.0.255", "10.0.0.1-10.0.0.255"},
		{"10.0.0.7", "10.0.0.7", "10.0.0.7/32"},
		{"10.0.0.0", "10.0.1.255", "10.0.0.0/23"},
		{"10.0.1.0", "10.0.2.255", "10.0.1.0-10.0.2.255"},
		{"0.0.0.0", "255.255.255.255", "0.0.0.0/0"},
		{"0.0.0.0", "255.255.255.254", "0.0.0.0-255.255.255.254"},
		{"128.0.0.0", "255.255.255.255", "128.0.0.0/1"},
		{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::/0"},
		{"::1", "::1", "::1/128"},
		{"2001:db8::", "2001:db8::ffff", "2001:db8::/112"},
		{"2001:db8::", "2001:db8::fffe", "2001:db8::-2001:db8::fffe"},
		{"8000::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "8000::/1"},
		{"::", "::ffff:ffff:ffff:ffff", "::/64"},
	}
	for _, tt := range tests {
		r := addrset.Range{From: ma(tt.from), To: ma(tt.to)}
		if got := r.String(); got != tt.want {
			t.Errorf("Range{%s, %s}.String() = %q, want %q", tt.from, tt.to, got, tt.want)
		}
		_, isPrefix := r.Prefix()
		if isPrefix == strings.Contains(tt.want, "-") {
			t.Errorf("Range{%s, %s}.Prefix() ok = %v", tt.from, tt.to, isPrefix)
		}
	}
	// Hand-built ranges that no Set holds must still print without panicking.
	for _, r := range []addrset.Range{{}, {From: ma("10.0.0.2"), To: ma("10.0.0.1")}, {From: ma("10.0.0.1"), To: ma("::1")}} {
		if _, ok := r.Prefix(); ok {
			t.Errorf("%#v.Prefix() ok for an invalid range", r)
		}
		_ = r.String()
	}
}

func TestFromPrefix(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"10.0.0.0/8", "{10.0.0.0/8}"},
		{"10.1.2.3/8", "{10.0.0.0/8}"}, // masked
		{"0.0.0.0/0", "{0.0.0.0/0}"},
		{"255.255.255.255/32", "{255.255.255.255/32}"},
		{"0.0.0.0/32", "{0.0.0.0/32}"},
		{"2001:db8::/32", "{2001:db8::/32}"},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "{ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128}"},
		{"::/128", "{::/128}"},
		// Mapped prefixes are the IPv4 prefix they embed.
		{"::ffff:10.0.0.0/104", "{10.0.0.0/8}"},
		{"::ffff:0.0.0.0/96", "{0.0.0.0/0}"},
		{"::ffff:10.0.0.1/128", "{10.0.0.1/32}"},
		// IPv6 prefixes spanning the mapped block leave it out.
		{"::/0", "{::-::fffe:ffff:ffff, ::1:0:0:0-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff}"},
		{"::/64", "{::-::fffe:ffff:ffff, ::1:0:0:0-::ffff:ffff:ffff:ffff}"},
		{"::/95", "{::/95}"},               // ends just before the mapped block
		{"::/80", "{::-::fffe:ffff:ffff}"}, // ends at the mapped block's last address
		{"::fffe:0:0/95", "{::fffe:0:0/96}"},
		{"::ffff:0:0/97", "{0.0.0.0/1}"},
		{"::ffff:128.0.0.0/97", "{128.0.0.0/1}"},
		{"::1:0:0:0/80", "{::1:0:0:0/80}"}, // starts just after the mapped block
	}
	for _, tt := range tests {
		s := addrset.FromPrefix(mp(tt.in))
		checkInvariant(t, tt.in, s)
		if got := s.String(); got != tt.want {
			t.Errorf("FromPrefix(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
	if s := addrset.FromPrefix(netip.Prefix{}); !s.IsEmpty() {
		t.Errorf("FromPrefix(zero) = %v, want empty", s)
	}
}

func TestFromRange(t *testing.T) {
	tests := []struct {
		from, to netip.Addr
		want     string
	}{
		{ma("10.0.0.1"), ma("10.0.0.5"), "{10.0.0.1-10.0.0.5}"},
		{ma("10.0.0.5"), ma("10.0.0.5"), "{10.0.0.5/32}"},
		{ma("10.0.0.6"), ma("10.0.0.5"), "{}"},
		{ma("10.0.0.1"), ma("::1"), "{}"},
		{ma("::1"), ma("10.0.0.1"), "{}"},
		{netip.Addr{}, ma("10.0.0.1"), "{}"},
		{ma("10.0.0.1"), netip.Addr{}, "{}"},
		{ma("::ffff:10.0.0.1"), ma("10.0.0.3"), "{10.0.0.1-10.0.0.3}"},
		{ma("::ffff:10.0.0.1"), ma("::ffff:10.0.0.3"), "{10.0.0.1-10.0.0.3}"},
		{ma("::ffff:10.0.0.1"), ma("::1"), "{}"},
		{ma("fe80::1%eth0"), ma("fe80::3%eth1"), "{fe80::1-fe80::3}"},
		{ma("::fffe:ffff:ffff"), ma("::1:0:0:0"), "{::fffe:ffff:ffff/128, ::1:0:0:0/128}"},
		{ma("0.0.0.0"), ma("255.255.255.255"), "{0.0.0.0/0}"},
		{ma("::"), ma("::ffff:ffff:ffff:ffff"), "{::-::fffe:ffff:ffff, ::1:0:0:0-::ffff:ffff:ffff:ffff}"},
		{ma("::ffff:0.0.0.0"), ma("::ffff:255.255.255.255"), "{0.0.0.0/0}"},
		{ma("::"), ma("::ffff:255.255.255.255"), "{}"}, // IPv6 to IPv4 once unmapped
	}
	for _, tt := range tests {
		s := addrset.FromRange(tt.from, tt.to)
		checkInvariant(t, "FromRange", s)
		if got := s.String(); got != tt.want {
			t.Errorf("FromRange(%v, %v) = %s, want %s", tt.from, tt.to, got, tt.want)
		}
	}
}

func TestOf(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{nil, "{}"},
		{[]string{"10.0.0.0/25", "10.0.0.128/25"}, "{10.0.0.0/24}"}, // adjacency merge
		{[]string{"10.0.1.0/24", "10.0.0.0/24"}, "{10.0.0.0/23}"},   // unsorted input
		{[]string{"10.0.0.0/24", "10.0.0.0/16", "10.0.5.0/24"}, "{10.0.0.0/16}"},
		{[]string{"10.0.0.0/24", "10.0.2.0/24"}, "{10.0.0.0/24, 10.0.2.0/24}"},
		{[]string{"2001:db8::/64", "10.0.0.0/8"}, "{10.0.0.0/8, 2001:db8::/64}"},
		{[]string{"255.255.255.255/32", "::/128"}, "{255.255.255.255/32, ::/128}"}, // last IPv4 and first IPv6 never merge
		{[]string{"10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"}, "{10.0.0.0-10.0.2.255}"},
		{[]string{"::ffff:10.0.0.0/120", "10.0.1.0/24"}, "{10.0.0.0/23}"},
	}
	for _, tt := range tests {
		var ps []netip.Prefix
		for _, p := range tt.in {
			ps = append(ps, mp(p))
		}
		s := addrset.Of(append(ps, netip.Prefix{})...)
		checkInvariant(t, "Of", s)
		if got := s.String(); got != tt.want {
			t.Errorf("Of(%v) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestSetOps(t *testing.T) {
	tests := []struct {
		name                   string
		a, b                   []string
		union, diff, intersect string
		overlaps, aHasB, bHasA bool
	}{
		{
			name:  "both empty",
			union: "{}", diff: "{}", intersect: "{}",
			aHasB: true, bHasA: true,
		},
		{
			name: "empty b", a: []string{"10.0.0.0/8"},
			union: "{10.0.0.0/8}", diff: "{10.0.0.0/8}", intersect: "{}",
			aHasB: true,
		},
		{
			name: "empty a", b: []string{"10.0.0.0/8"},
			union: "{10.0.0.0/8}", diff: "{}", intersect: "{}",
			bHasA: true,
		},
		{
			name: "equal", a: []string{"10.0.0.0/8"}, b: []string{"10.0.0.0/8"},
			union: "{10.0.0.0/8}", diff: "{}", intersect: "{10.0.0.0/8}",
			overlaps: true, aHasB: true, bHasA: true,
		},
		{
			name: "hole in the middle", a: []string{"10.0.0.0/16"}, b: []string{"10.0.1.0/24"},
			union:     "{10.0.0.0/16}",
			diff:      "{10.0.0.0/24, 10.0.2.0-10.0.255.255}",
			intersect: "{10.0.1.0/24}",
			overlaps:  true, aHasB: true,
		},
		{
			name: "first address", a: []string{"10.0.0.0/24"}, b: []string{"10.0.0.0/32"},
			union: "{10.0.0.0/24}", diff: "{10.0.0.1-10.0.0.255}", intersect: "{10.0.0.0/32}",
			overlaps: true, aHasB: true,
		},
		{
			name: "last address", a: []string{"10.0.0.0/24"}, b: []string{"10.0.0.255/32"},
			union: "{10.0.0.0/24}", diff: "{10.0.0.0-10.0.0.254}", intersect: "{10.0.0.255/32}",
			overlaps: true, aHasB: true,
		},
		{
			name: "adjacent", a: []string{"10.0.0.0/25"}, b: []string{"10.0.0.128/25"},
			union: "{10.0.0.0/24}", diff: "{10.0.0.0/25}", intersect: "{}",
		},
		{
			name: "disjoint with gap", a: []string{"10.0.0.0/25"}, b: []string{"10.0.0.129-10.0.0.255"},
			union: "{10.0.0.0/25, 10.0.0.129-10.0.0.255}", diff: "{10.0.0.0/25}", intersect: "{}",
		},
		{
			name: "partial overlap", a: []string{"10.0.0.0-10.0.0.9"}, b: []string{"10.0.0.5-10.0.0.20"},
			union: "{10.0.0.0-10.0.0.20}", diff: "{10.0.0.0-10.0.0.4}", intersect: "{10.0.0.5-10.0.0.9}",
			overlaps: true,
		},
		{
			name: "b spans several ranges of a",
			a:    []string{"10.0.0.0/24", "10.0.2.0/24", "10.0.4.0/24"}, b: []string{"10.0.0.128-10.0.4.127"},
			union:     "{10.0.0.0-10.0.4.255}",
			diff:      "{10.0.0.0/25, 10.0.4.128/25}",
			intersect: "{10.0.0.128/25, 10.0.2.0/24, 10.0.4.0/25}",
			overlaps:  true,
		},
		{
			name: "several holes in one range",
			a:    []string{"10.0.0.0/24"}, b: []string{"10.0.0.16/28", "10.0.0.64/28", "10.0.0.250-10.0.1.5"},
			union:     "{10.0.0.0-10.0.1.5}",
			diff:      "{10.0.0.0/28, 10.0.0.32/27, 10.0.0.80-10.0.0.249}",
			intersect: "{10.0.0.16/28, 10.0.0.64/28, 10.0.0.250-10.0.0.255}",
			overlaps:  true,
		},
		{
			name: "whole IPv4 space", a: []string{"0.0.0.0/0"}, b: []string{"0.0.0.0/32", "255.255.255.255/32"},
			union: "{0.0.0.0/0}", diff: "{0.0.0.1-255.255.255.254}", intersect: "{0.0.0.0/32, 255.255.255.255/32}",
			overlaps: true, aHasB: true,
		},
		{
			name: "whole IPv6 space", a: []string{"::/0"}, b: []string{"::/128", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"},
			union:     "{::-::fffe:ffff:ffff, ::1:0:0:0-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff}",
			diff:      "{::1-::fffe:ffff:ffff, ::1:0:0:0-ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe}",
			intersect: "{::/128, ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128}",
			overlaps:  true, aHasB: true,
		},
		{
			name: "mixed families", a: []string{"10.0.0.0/8", "2001:db8::/32"}, b: []string{"10.1.0.0/16", "2001:db8:1::/48", "192.168.0.0/16"},
			union:     "{10.0.0.0/8, 192.168.0.0/16, 2001:db8::/32}",
			diff:      "{10.0.0.0/16, 10.2.0.0-10.255.255.255, 2001:db8::/48, 2001:db8:2::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff}",
			intersect: "{10.1.0.0/16, 2001:db8:1::/48}",
			overlaps:  true,
		},
		{
			name: "families never touch", a: []string{"0.0.0.0/0"}, b: []string{"::/0"},
			union:     "{0.0.0.0/0, ::-::fffe:ffff:ffff, ::1:0:0:0-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff}",
			diff:      "{0.0.0.0/0}",
			intersect: "{}",
		},
		{
			name: "last IPv4 and first IPv6", a: []string{"255.255.255.255/32"}, b: []string{"::/128"},
			union: "{255.255.255.255/32, ::/128}", diff: "{255.255.255.255/32}", intersect: "{}",
		},
		{
			name: "mapped b removes IPv4", a: []string{"10.0.0.0/24"}, b: []string{"::ffff:10.0.0.0/121"},
			union: "{10.0.0.0/24}", diff: "{10.0.0.128/25}", intersect: "{10.0.0.0/25}",
			overlaps: true, aHasB: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := set(tt.a...), set(tt.b...)
			check := func(op string, got addrset.Set, want string) {
				t.Helper()
				checkInvariant(t, op, got)
				if got.String() != want {
					t.Errorf("%v %s %v = %s, want %s", a, op, b, got, want)
				}
			}
			check("∪", a.Union(b), tt.union)
			check("∪ (swapped)", b.Union(a), tt.union)
			check("∖", a.Difference(b), tt.diff)
			check("∩", a.Intersect(b), tt.intersect)
			check("∩ (swapped)", b.Intersect(a), tt.intersect)
			if got := a.Overlaps(b); got != tt.overlaps {
				t.Errorf("Overlaps = %v, want %v", got, tt.overlaps)
			}
			if got := b.Overlaps(a); got != tt.overlaps {
				t.Errorf("swapped Overlaps = %v, want %v", got, tt.overlaps)
			}
			if got := a.ContainsSet(b); got != tt.aHasB {
				t.Errorf("a.ContainsSet(b) = %v, want %v", got, tt.aHasB)
			}
			if got := b.ContainsSet(a); got != tt.bHasA {
				t.Errorf("b.ContainsSet(a) = %v, want %v", got, tt.bHasA)
			}
			if got, want := a.Equal(b), tt.aHasB && tt.bHasA; got != want {
				t.Errorf("Equal = %v, want %v", got, want)
			}
		})
	}
}

func TestContains(t *testing.T) {
	s := set("10.0.0.0/24", "10.0.2.0-10.0.2.9", "255.255.255.255/32", "::/128", "2001:db8::/64", "fe80::/10")
	tests := []struct {
		addr netip.Addr
		want bool
	}{
		{ma("10.0.0.0"), true},
		{ma("10.0.0.255"), true},
		{ma("9.255.255.255"), false},
		{ma("10.0.1.0"), false},
		{ma("10.0.2.0"), true},
		{ma("10.0.2.9"), true},
		{ma("10.0.2.10"), false},
		{ma("255.255.255.255"), true},
		{ma("255.255.255.254"), false},
		{ma("0.0.0.0"), false},
		{ma("::"), true},
		{ma("::1"), false},
		{ma("2001:db8::1"), true},
		{ma("2001:db8:0:0:ffff:ffff:ffff:ffff"), true},
		{ma("2001:db8:0:1::"), false},
		{ma("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), false},
		{ma("::ffff:10.0.0.7"), true}, // mapped means IPv4
		{ma("::ffff:10.0.1.7"), false},
		{ma("fe80::1%eth0"), true}, // zones name an interface, not another address
		{netip.Addr{}, false},
	}
	for _, tt := range tests {
		if got := s.Contains(tt.addr); got != tt.want {
			t.Errorf("%v.Contains(%v) = %v, want %v", s, tt.addr, got, tt.want)
		}
	}
	var empty addrset.Set
	if empty.Contains(ma("10.0.0.1")) || empty.Contains(netip.Addr{}) {
		t.Error("empty set contains something")
	}
	// ::/0 must not match IPv4, in either spelling.
	all6 := set("::/0")
	for _, a := range []string{"10.0.0.1", "::ffff:10.0.0.1", "0.0.0.0", "255.255.255.255"} {
		if all6.Contains(ma(a)) {
			t.Errorf("::/0 contains %s", a)
		}
	}
	for _, a := range []string{"::", "::fffe:ffff:ffff", "::1:0:0:0", "2001:db8::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"} {
		if !all6.Contains(ma(a)) {
			t.Errorf("::/0 does not contain %s", a)
		}
	}
}

func TestContainsAllocs(t *testing.T) {
	s := benchSet(1000, 0)
	addrs := []netip.Addr{ma("10.0.0.5"), ma("10.0.0.40"), ma("::ffff:10.0.0.5"), ma("fe80::1%eth0"), {}}
	for _, a := range addrs {
		if n := testing.AllocsPerRun(100, func() { s.Contains(a) }); n != 0 {
			t.Errorf("Contains(%v) allocates %v times", a, n)
		}
	}
}

func TestPrefixes(t *testing.T) {
	tests := []struct {
		in   []string
		want []string
	}{
		{nil, nil},
		{[]string{"10.0.0.0/8"}, []string{"10.0.0.0/8"}},
		{[]string{"10.0.0.1-10.0.0.6"}, []string{"10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"}},
		{[]string{"0.0.0.1-255.255.255.255"}, []string{
			"0.0.0.1/32", "0.0.0.2/31", "0.0.0.4/30", "0.0.0.8/29", "0.0.0.16/28", "0.0.0.32/27", "0.0.0.64/26", "0.0.0.128/25",
			"0.0.1.0/24", "0.0.2.0/23", "0.0.4.0/22", "0.0.8.0/21", "0.0.16.0/20", "0.0.32.0/19", "0.0.64.0/18", "0.0.128.0/17",
			"0.1.0.0/16", "0.2.0.0/15", "0.4.0.0/14", "0.8.0.0/13", "0.16.0.0/12", "0.32.0.0/11", "0.64.0.0/10", "0.128.0.0/9",
			"1.0.0.0/8", "2.0.0.0/7", "4.0.0.0/6", "8.0.0.0/5", "16.0.0.0/4", "32.0.0.0/3", "64.0.0.0/2", "128.0.0.0/1",
		}},
		{[]string{"0.0.0.0/0", "2001:db8::/127", "::1/128"}, []string{"0.0.0.0/0", "::1/128", "2001:db8::/127"}},
		{[]string{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}, []string{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127"}},
		{[]string{"::/64"}, []string{"::/81", "::8000:0:0/82", "::c000:0:0/83", "::e000:0:0/84", "::f000:0:0/85", "::f800:0:0/86",
			"::fc00:0:0/87", "::fe00:0:0/88", "::ff00:0:0/89", "::ff80:0:0/90", "::ffc0:0:0/91", "::ffe0:0:0/92", "::fff0:0:0/93",
			"::fff8:0:0/94", "::fffc:0:0/95", "::fffe:0:0/96", "::1:0:0:0/80", "::2:0:0:0/79", "::4:0:0:0/78", "::8:0:0:0/77",
			"::10:0:0:0/76", "::20:0:0:0/75", "::40:0:0:0/74", "::80:0:0:0/73", "::100:0:0:0/72", "::200:0:0:0/71", "::400:0:0:0/70",
			"::800:0:0:0/69", "::1000:0:0:0/68", "::2000:0:0:0/67", "::4000:0:0:0/66", "::8000:0:0:0/65"}},
	}
	for _, tt := range tests {
		s := set(tt.in...)
		var got []string
		for _, p := range s.Prefixes() {
			got = append(got, p.String())
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%v.Prefixes() = %v, want %v", s, got, tt.want)
		}
		if back := addrset.Of(s.Prefixes()...); !back.Equal(s) {
			t.Errorf("Of(%v.Prefixes()) = %v", s, back)
		}
	}
}

func TestFamilies(t *testing.T) {
	tests := []struct {
		in         []string
		ipv4, ipv6 string
	}{
		{nil, "{}", "{}"},
		{[]string{"10.0.0.0/8"}, "{10.0.0.0/8}", "{}"},
		{[]string{"2001:db8::/32"}, "{}", "{2001:db8::/32}"},
		{[]string{"10.0.0.0/8", "192.168.0.0/16", "::1/128", "2001:db8::/32"}, "{10.0.0.0/8, 192.168.0.0/16}", "{::1/128, 2001:db8::/32}"},
	}
	for _, tt := range tests {
		s := set(tt.in...)
		v4, v6 := s.IPv4(), s.IPv6()
		if v4.String() != tt.ipv4 || v6.String() != tt.ipv6 {
			t.Errorf("%v: IPv4 = %v, IPv6 = %v; want %s, %s", s, v4, v6, tt.ipv4, tt.ipv6)
		}
		if !v4.Union(v6).Equal(s) {
			t.Errorf("%v: IPv4 ∪ IPv6 = %v", s, v4.Union(v6))
		}
		// Growing a family view must not write into the original set.
		before := s.String()
		_ = v4.Union(set("11.0.0.0/8", "::2/128"))
		_ = v6.Union(set("11.0.0.0/8"))
		if s.String() != before {
			t.Errorf("set changed from %s to %s", before, s)
		}
	}
}

func TestImmutable(t *testing.T) {
	s := set("10.0.0.0/24", "10.0.2.0/24")
	rs := s.Ranges()
	rs[0].To = ma("10.0.5.0")
	if s.String() != "{10.0.0.0/24, 10.0.2.0/24}" {
		t.Errorf("editing Ranges changed the set to %v", s)
	}
	u := s.Union(addrset.Set{})
	_ = u.Union(set("10.0.1.0/24"))
	_ = s.Difference(set("10.0.0.0/25"))
	if s.String() != "{10.0.0.0/24, 10.0.2.0/24}" {
		t.Errorf("operations changed the set to %v", s)
	}
}

func TestZeroSet(t *testing.T) {
	var z addrset.Set
	if !z.IsEmpty() || z.String() != "{}" || len(z.Ranges()) != 0 || len(z.Prefixes()) != 0 {
		t.Errorf("zero Set is not empty: %v", z)
	}
	if !z.Equal(addrset.Of()) || !z.Equal(set("10.0.0.0/8").Difference(set("0.0.0.0/0"))) {
		t.Error("zero Set differs from other empty sets")
	}
	if !z.ContainsSet(z) || z.Overlaps(z) || !set("10.0.0.0/8").ContainsSet(z) || z.ContainsSet(set("10.0.0.0/32")) {
		t.Error("zero Set relations are wrong")
	}
}

func TestParsePrefix(t *testing.T) {
	valid := []struct{ in, want string }{
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"192.168.2.5/24", "192.168.2.0/24"},
		{"0.0.0.0/0", "0.0.0.0/0"},
		{"1.2.3.4/0", "0.0.0.0/0"},
		{"255.255.255.255/32", "255.255.255.255/32"},
		{"2001:db8::/32", "2001:db8::/32"},
		{"2001:0db8::1/64", "2001:db8::/64"}, // leading zeros in a hextet are normal IPv6
		{"::/0", "::/0"},
		{"::1/128", "::1/128"},
		{"::1.2.3.4/128", "::102:304/128"},
		{"2001:DB8::/32", "2001:db8::/32"},
	}
	for _, tt := range valid {
		p, err := addrset.ParsePrefix(tt.in)
		if err != nil || p.String() != tt.want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", tt.in, p, err, tt.want)
		}
	}
	invalid := []struct{ in, reason string }{
		{"", "empty"},
		{"10.0.0.0", `missing "/"`},
		{"10.0.0.0/", "missing prefix length"},
		{"10.0.0.0/33", "out of range"},
		{"::/129", "out of range"},
		{"10.0.0.0/08", "leading zero"},
		{"10.0.0.0/00", "leading zero"},
		{"10.0.0.0/+8", "bad prefix length"},
		{"10.0.0.0/-1", "bad prefix length"},
		{"10.0.0.0/8 ", "bad prefix length"},
		{"10.0.0.0/99999999999999999999999", "out of range"},
		{"010.0.0.0/8", "leading zero"},
		{"10.00.0.0/16", "leading zero"},
		{"::ffff:01.2.3.4/128", "bad address"},
		{"fe80::1%eth0/64", "zones"},
		{"::ffff:10.0.0.0/104", "IPv4-mapped"},
		{"::ffff:0:0/96", "IPv4-mapped"},
		{"::ffff:10.0.0.1/64", "IPv4-mapped"},
		{"10.0.0.0/8/8", "bad address"},
		{" 10.0.0.0/8", "bad address"},
		{"10.0.0/8", "bad address"},
		{"/8", "bad address"},
		{"10.0.0.0/8\x00", "bad prefix length"},
	}
	for _, tt := range invalid {
		p, err := addrset.ParsePrefix(tt.in)
		if err == nil {
			t.Errorf("ParsePrefix(%q) = %v, want error", tt.in, p)
			continue
		}
		var ce *addrset.CIDRError
		if !errors.As(err, &ce) || ce.Value != tt.in {
			t.Errorf("ParsePrefix(%q) error %v is not a *CIDRError for the input", tt.in, err)
		}
		if !strings.HasPrefix(err.Error(), "invalid CIDR "+strconv.Quote(tt.in)+": ") || !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("ParsePrefix(%q) error = %q, want it to mention %q", tt.in, err, tt.reason)
		}
	}
}

func TestNonCanonical(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"192.168.2.5/24", true},
		{"192.168.2.0/24", false},
		{"10.0.0.1/32", false},
		{"1.2.3.4/0", true},
		{"2001:db8::1/64", true},
		{"2001:db8::/64", false},
		{"not a cidr", false},
		{"010.0.0.1/8", false},
		{"::ffff:10.0.0.1/120", false},
	}
	for _, tt := range tests {
		if got := addrset.NonCanonical(tt.in); got != tt.want {
			t.Errorf("NonCanonical(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestIPBlock(t *testing.T) {
	tests := []struct {
		name   string
		cidr   string
		except []string
		want   string // the set, or the error text
		index  int    // except index of the error; -1 for a cidr error
	}{
		{name: "no except", cidr: "10.0.0.0/16", want: "{10.0.0.0/16}"},
		{name: "host bits", cidr: "10.0.3.7/16", except: []string{"10.0.1.9/24"}, want: "{10.0.0.0/24, 10.0.2.0-10.0.255.255}"},
		{name: "one except", cidr: "10.0.0.0/16", except: []string{"10.0.1.0/24"}, want: "{10.0.0.0/24, 10.0.2.0-10.0.255.255}"},
		{name: "except at first address", cidr: "10.0.0.0/24", except: []string{"10.0.0.0/32"}, want: "{10.0.0.1-10.0.0.255}"},
		{name: "except at last address", cidr: "10.0.0.0/24", except: []string{"10.0.0.255/32"}, want: "{10.0.0.0-10.0.0.254}"},
		{name: "except halves", cidr: "10.0.0.0/24", except: []string{"10.0.0.0/25", "10.0.0.128/25"}, want: "{}"},
		{name: "overlapping excepts", cidr: "10.0.0.0/24", except: []string{"10.0.0.0/26", "10.0.0.0/25", "10.0.0.64/26"}, want: "{10.0.0.128/25}"},
		{name: "whole IPv4 space", cidr: "0.0.0.0/0", except: []string{"10.0.0.0/8", "0.0.0.0/1"}, want: "{128.0.0.0/1}"},
		{name: "IPv6 cidr ending in the mapped block", cidr: "::/80", except: []string{"::/96"}, want: "{::1:0:0-::fffe:ffff:ffff}"},
		{name: "whole IPv6 space", cidr: "::/0", except: []string{"8000::/1"}, want: "{::-::fffe:ffff:ffff, ::1:0:0:0-7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff}"},
		{name: "IPv6", cidr: "2001:db8::/120", except: []string{"2001:db8::80/121", "2001:db8::/128"}, want: "{2001:db8::1-2001:db8::7f}"},
		{name: "host /32", cidr: "10.0.0.1/32", want: "{10.0.0.1/32}"},
		{name: "host /128", cidr: "2001:db8::1/128", want: "{2001:db8::1/128}"},
		{name: "empty except list", cidr: "10.0.0.0/8", except: []string{}, want: "{10.0.0.0/8}"},

		{name: "bad cidr", cidr: "10.0.0.0", want: `invalid CIDR "10.0.0.0": missing "/"`, index: -1},
		{name: "empty cidr", cidr: "", want: `invalid CIDR "": empty string`, index: -1},
		{name: "mapped cidr", cidr: "::ffff:10.0.0.0/104", want: `invalid CIDR "::ffff:10.0.0.0/104": IPv4-mapped`, index: -1},
		{name: "bad except", cidr: "10.0.0.0/8", except: []string{"10.1.0.0/16", "10.2.0.0/0x10"}, want: `invalid except[1] "10.2.0.0/0x10": bad prefix length`, index: 1},
		{name: "except equal to cidr", cidr: "10.0.0.0/16", except: []string{"10.0.0.0/16"}, want: `invalid except[0] "10.0.0.0/16": not strictly inside cidr 10.0.0.0/16`},
		{name: "except equal after masking", cidr: "10.0.0.0/16", except: []string{"10.0.9.9/16"}, want: `invalid except[0] "10.0.9.9/16": not strictly inside`},
		{name: "except wider than cidr", cidr: "10.0.0.0/16", except: []string{"10.0.0.0/8"}, want: `invalid except[0] "10.0.0.0/8": not strictly inside`},
		{name: "except outside", cidr: "10.0.0.0/16", except: []string{"10.0.1.0/24", "10.1.0.0/24"}, want: `invalid except[1] "10.1.0.0/24": not strictly inside cidr 10.0.0.0/16`, index: 1},
		{name: "except just after", cidr: "10.0.0.0/24", except: []string{"10.0.1.0/32"}, want: `invalid except[0] "10.0.1.0/32": not strictly inside`},
		{name: "except just before", cidr: "10.0.1.0/24", except: []string{"10.0.0.255/32"}, want: `invalid except[0] "10.0.0.255/32": not strictly inside`},
		{name: "IPv6 except in IPv4 cidr", cidr: "10.0.0.0/8", except: []string{"::/128"}, want: `invalid except[0] "::/128": IPv6 except in IPv4 cidr 10.0.0.0/8`},
		{name: "IPv4 except in IPv6 cidr", cidr: "::/0", except: []string{"10.0.0.0/8"}, want: `invalid except[0] "10.0.0.0/8": IPv4 except in IPv6 cidr ::/0`},
		{name: "mapped except", cidr: "::/0", except: []string{"::ffff:10.0.0.0/104"}, want: `invalid except[0] "::ffff:10.0.0.0/104": IPv4-mapped`},
		{name: "zone in except", cidr: "fe80::/10", except: []string{"fe80::%eth0/64"}, want: `invalid except[0] "fe80::%eth0/64": zones`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := addrset.IPBlock(tt.cidr, tt.except)
			if !strings.HasPrefix(tt.want, "invalid") {
				if err != nil {
					t.Fatalf("IPBlock(%q, %q) error: %v", tt.cidr, tt.except, err)
				}
				checkInvariant(t, "IPBlock", s)
				if s.String() != tt.want {
					t.Fatalf("IPBlock(%q, %q) = %v, want %s", tt.cidr, tt.except, s, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("IPBlock(%q, %q) = %v, want error %q", tt.cidr, tt.except, s, tt.want)
			}
			if !s.IsEmpty() {
				t.Errorf("IPBlock failed open: error %v with set %v", err, s)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error = %q, want prefix %q", err, tt.want)
			}
			var ce *addrset.CIDRError
			var ee *addrset.ExceptError
			switch {
			case tt.index < 0:
				if !errors.As(err, &ce) || ce.Value != tt.cidr {
					t.Errorf("error %v is not a *CIDRError for %q", err, tt.cidr)
				}
			case !errors.As(err, &ee):
				t.Errorf("error %v is not an *ExceptError", err)
			case ee.Index != tt.index || ee.Value != tt.except[tt.index] || ee.Reason == "":
				t.Errorf("ExceptError = %+v, want index %d", *ee, tt.index)
			}
		})
	}
}

package addrset

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// CIDRError reports an unusable CIDR string, such as an ipBlock's cidr.
type CIDRError struct {
	Value  string // the input as given
	Reason string
}

func (e *CIDRError) Error() string {
	return fmt.Sprintf("invalid CIDR %q: %s", e.Value, e.Reason)
}

// ExceptError reports an unusable entry of an ipBlock's except list. Index
// lets callers build a field path such as "ipBlock.except[2]".
type ExceptError struct {
	Index  int
	Value  string // the entry as given
	Reason string
}

func (e *ExceptError) Error() string {
	return fmt.Sprintf("invalid except[%d] %q: %s", e.Index, e.Value, e.Reason)
}

// parse is the strict CIDR grammar shared by ParsePrefix, NonCanonical and
// IPBlock. It returns the prefix unmasked, so NonCanonical can see host bits,
// and a bare reason, so each caller can wrap it in its own error type.
func parse(s string) (netip.Prefix, string) {
	if s == "" {
		return netip.Prefix{}, "empty string"
	}
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return netip.Prefix{}, `missing "/" and prefix length`
	}
	addrStr, bitsStr := s[:i], s[i+1:]
	if strings.IndexByte(addrStr, '%') >= 0 {
		return netip.Prefix{}, "zones are not allowed in a CIDR"
	}
	addr, err := netip.ParseAddr(addrStr)
	if err != nil {
		// netip repeats the input in its message; the caller already
		// quotes it, so keep only the reason.
		msg := err.Error()
		if _, after, ok := strings.Cut(msg, "): "); ok {
			msg = after
		}
		return netip.Prefix{}, "bad address: " + msg
	}
	if addr.Is4In6() {
		// Ambiguous between families: Kubernetes' strict validation rejects
		// it and a dual-stack dataplane would match it as IPv4 anyway.
		return netip.Prefix{}, "IPv4-mapped IPv6 prefixes are not allowed; use the IPv4 form"
	}
	if bitsStr == "" {
		return netip.Prefix{}, "missing prefix length"
	}
	for _, c := range []byte(bitsStr) {
		if c < '0' || c > '9' {
			return netip.Prefix{}, fmt.Sprintf("bad prefix length %q", bitsStr)
		}
	}
	if len(bitsStr) > 1 && bitsStr[0] == '0' {
		// Some parsers read a leading zero as octal; refuse rather than guess.
		return netip.Prefix{}, fmt.Sprintf("prefix length %q has a leading zero", bitsStr)
	}
	bits, err := strconv.Atoi(bitsStr)
	if err != nil || bits > addr.BitLen() {
		return netip.Prefix{}, fmt.Sprintf("prefix length %s out of range for IPv%d", bitsStr, family(addr))
	}
	return netip.PrefixFrom(addr, bits), ""
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// ParsePrefix parses a CIDR strictly: it rejects leading zeros (in IPv4
// octets and in the prefix length), zones, a missing "/" and IPv4-mapped IPv6
// prefixes. Host bits are accepted, as Kubernetes accepts "192.168.2.5/24",
// and the returned prefix is masked. Errors are *CIDRError.
func ParsePrefix(s string) (netip.Prefix, error) {
	p, reason := parse(s)
	if reason != "" {
		return netip.Prefix{}, &CIDRError{Value: s, Reason: reason}
	}
	return p.Masked(), nil
}

// NonCanonical reports whether the CIDR s has host bits set, e.g.
// "192.168.2.5/24", so a linter can warn that it means 192.168.2.0/24. It is
// false when s does not parse.
func NonCanonical(s string) bool {
	p, reason := parse(s)
	return reason == "" && p != p.Masked()
}

// IPBlock returns cidr minus every except, as Kubernetes' networking/v1
// IPBlock defines it.
//
// It fails with *CIDRError when cidr does not parse, and with *ExceptError
// naming the first offending entry when an except does not parse, is of the
// other family, or is not strictly inside cidr (contained in it with a
// longer prefix length). On error the Set is always empty: a policy engine
// must never fail open by using a partially built block.
func IPBlock(cidr string, except []string) (Set, error) {
	c, reason := parse(cidr)
	if reason != "" {
		return Set{}, &CIDRError{Value: cidr, Reason: reason}
	}
	c = c.Masked()
	ex := make([]netip.Prefix, len(except))
	for i, s := range except {
		e, reason := parse(s)
		if reason != "" {
			return Set{}, &ExceptError{Index: i, Value: s, Reason: reason}
		}
		e = e.Masked()
		if e.Addr().Is4() != c.Addr().Is4() {
			return Set{}, &ExceptError{Index: i, Value: s,
				Reason: fmt.Sprintf("IPv%d except in IPv%d cidr %s", family(e.Addr()), family(c.Addr()), c)}
		}
		if e.Bits() <= c.Bits() || !c.Contains(e.Addr()) {
			return Set{}, &ExceptError{Index: i, Value: s,
				Reason: fmt.Sprintf("not strictly inside cidr %s", c)}
		}
		ex[i] = e
	}
	return FromPrefix(c).Difference(Of(ex...)), nil
}

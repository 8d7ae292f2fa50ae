package policylib

import (
	"fmt"
	"net/netip"
)

// parsePrefix parses a CIDR already validated by the API server's rules.
func parsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: %w", s, err)
	}
	return p.Masked(), nil
}

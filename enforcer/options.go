package enforcer

import (
	"errors"
	"fmt"
	"net/netip"
)

// DefaultTable is the name of the nftables table podwall owns when
// Options.Table is empty.
const DefaultTable = "podwall"

// maxNameLen is the longest table, chain or set name the kernel accepts
// (NFT_NAME_MAXLEN, 256, counts the terminating NUL).
const maxNameLen = 255

// Options say how a node's rules are compiled. The zero Options is valid and
// means the defaults: table "podwall", the host may reach its local pods, no
// node addresses.
type Options struct {
	// Table is the name of the nftables table (family inet) podwall owns and
	// replaces as a whole; nothing else should write to it. Default
	// DefaultTable ("podwall"). Letters, digits, '_', '-', '.' and '/',
	// starting with a letter or '_', at most 255 bytes.
	Table string

	// AllowHostToLocalPods says whether traffic the node itself originates
	// (kubelet probes, node-local agents, host-network pods) may reach its
	// local pods whatever their ingress rules say. nil means true, the
	// default, as kubelet probes must work. Such traffic leaves through the
	// output hook, so when it is allowed the table has no output chain; when
	// it is not, the output chain applies the destination pods' ingress rules
	// to it.
	AllowHostToLocalPods *bool

	// NodeAddrs are the node's own addresses: its InternalIP and ExternalIP
	// and any address it uses to reach its pods (such as a bridge gateway
	// address). The kernel rules do not need them; Ruleset.Allowed uses them
	// to recognise flows the host originates, which decides which conntrack
	// entries a change must cut. Default none.
	NodeAddrs []netip.Addr
}

// Bool returns a pointer to b, for Options.AllowHostToLocalPods.
func Bool(b bool) *bool { return &b }

// withDefaults returns o with every unset field at its default.
func (o Options) withDefaults() Options {
	if o.Table == "" {
		o.Table = DefaultTable
	}
	if o.AllowHostToLocalPods == nil {
		o.AllowHostToLocalPods = Bool(true)
	}
	return o
}

// Validate reports every problem with o (after defaults), joined.
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	if err := checkName(o.Table); err != nil {
		errs = append(errs, fmt.Errorf("enforcer: Options.Table: %w", err))
	}
	seen := map[netip.Addr]bool{}
	for i, a := range o.NodeAddrs {
		switch {
		case !a.IsValid():
			errs = append(errs, fmt.Errorf("enforcer: Options.NodeAddrs[%d]: invalid address", i))
		case a.Zone() != "":
			errs = append(errs, fmt.Errorf("enforcer: Options.NodeAddrs[%d]: %s has a zone", i, a))
		case seen[a.Unmap()]:
			errs = append(errs, fmt.Errorf("enforcer: Options.NodeAddrs[%d]: %s is listed twice", i, a))
		}
		seen[a.Unmap()] = true
	}
	return errors.Join(errs...)
}

// checkName accepts the names nft's parser reads as one identifier.
func checkName(s string) error {
	if s == "" {
		return errors.New("empty name")
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("name %.20q... is %d bytes long, more than %d", s, len(s), maxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
		if i == 0 && !letter {
			return fmt.Errorf("name %q must start with a letter or '_'", s)
		}
		if !letter && !(c >= '0' && c <= '9') && c != '-' && c != '.' && c != '/' {
			return fmt.Errorf("name %q has %q: only letters, digits, '_', '-', '.' and '/' are allowed", s, c)
		}
	}
	return nil
}

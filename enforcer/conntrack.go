package enforcer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/podwall/podwall/policylib"
)

// ctnetlink constants (linux/netfilter/nfnetlink_conntrack.h).
const (
	ctMsgGet    = 1
	ctMsgDelete = 2

	ctaTupleOrig  = 1
	ctaTupleReply = 2
	ctaID         = 12
	ctaZone       = 18

	ctaTupleIP    = 1
	ctaTupleProto = 2

	ctaIPv4Src = 1
	ctaIPv4Dst = 2
	ctaIPv6Src = 3
	ctaIPv6Dst = 4

	ctaProtoNum     = 1
	ctaProtoSrcPort = 2
	ctaProtoDstPort = 3
)

// ctEntry is what cleanup needs of a conntrack entry.
type ctEntry struct {
	family   uint8
	orig     []byte // CTA_TUPLE_ORIG as received, to name the entry when deleting
	id, zone []byte // CTA_ID, CTA_ZONE when present
	// The flow as the filter hooks saw it: the original source, and the
	// reply's source and source port, which are the real destination
	// after any DNAT (a Service address translated to a pod).
	src, dst netip.Addr
	proto    uint8
	dport    uint16
}

// cutConntrack deletes the conntrack entries whose real source or
// destination is one of addrs and whose flow rs denies. It returns how many
// it deleted. Entries that vanish meanwhile are not errors.
func cutConntrack(ctx context.Context, netns int, addrs map[[16]byte]bool, rs *Ruleset) (int, error) {
	if len(addrs) == 0 {
		return 0, nil
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return 0, fmt.Errorf("dial ctnetlink: %w", err)
	}
	defer c.Close()
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_CTNETLINK<<8 | ctMsgGet),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		return 0, fmt.Errorf("dump conntrack: %w", err)
	}
	deleted := 0
	var errs []error
	for _, m := range msgs {
		if err := ctx.Err(); err != nil {
			return deleted, err
		}
		e, ok := parseCtEntry(m.Data)
		if !ok || !addrs[e.src.As16()] && !addrs[e.dst.As16()] {
			continue
		}
		if rs.Allowed(e.src, e.dst, ctProtocol(e.proto), int32(e.dport)) {
			continue
		}
		if err := deleteCtEntry(c, e); err != nil {
			if !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("delete conntrack entry %s -> %s proto %d port %d: %w", e.src, e.dst, e.proto, e.dport, err))
			}
			continue
		}
		deleted++
	}
	return deleted, errors.Join(errs...)
}

// ctProtocol maps an IP protocol number to the policylib protocol the rules
// judge it as: protocols without ports are allowed only by any-port rules,
// like ICMP.
func ctProtocol(p uint8) policylib.Protocol {
	switch p {
	case unix.IPPROTO_TCP:
		return policylib.TCP
	case unix.IPPROTO_UDP:
		return policylib.UDP
	case unix.IPPROTO_SCTP:
		return policylib.SCTP
	}
	return policylib.ICMP
}

func parseCtEntry(data []byte) (ctEntry, bool) {
	var e ctEntry
	if len(data) < 4 {
		return e, false
	}
	e.family = data[0]
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return e, false
	}
	var origOK, replyOK bool
	for ad.Next() {
		switch ad.Type() {
		case ctaTupleOrig:
			e.orig = ad.Bytes()
			var t ctTuple
			if t, origOK = parseTuple(e.orig); origOK {
				e.src, e.proto = t.src, t.proto
			}
		case ctaTupleReply:
			var t ctTuple
			if t, replyOK = parseTuple(ad.Bytes()); replyOK {
				e.dst, e.dport = t.src, t.sport
			}
		case ctaID:
			e.id = ad.Bytes()
		case ctaZone:
			e.zone = ad.Bytes()
		}
	}
	return e, ad.Err() == nil && origOK && replyOK && e.src.IsValid() && e.dst.IsValid()
}

type ctTuple struct {
	src   netip.Addr
	proto uint8
	sport uint16
}

func parseTuple(b []byte) (ctTuple, bool) {
	var t ctTuple
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return t, false
	}
	for ad.Next() {
		switch ad.Type() {
		case ctaTupleIP:
			ad.Nested(func(nd *netlink.AttributeDecoder) error {
				for nd.Next() {
					if typ := nd.Type(); typ == ctaIPv4Src || typ == ctaIPv6Src {
						if a, ok := netip.AddrFromSlice(nd.Bytes()); ok {
							t.src = a.Unmap()
						}
					}
				}
				return nil
			})
		case ctaTupleProto:
			ad.Nested(func(nd *netlink.AttributeDecoder) error {
				for nd.Next() {
					switch nd.Type() {
					case ctaProtoNum:
						t.proto = nd.Uint8()
					case ctaProtoSrcPort:
						if p := nd.Bytes(); len(p) == 2 {
							t.sport = binary.BigEndian.Uint16(p)
						}
					}
				}
				return nil
			})
		}
	}
	return t, ad.Err() == nil
}

func deleteCtEntry(c *netlink.Conn, e ctEntry) error {
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(ctaTupleOrig|unix.NLA_F_NESTED, e.orig)
	if e.id != nil {
		ae.Bytes(ctaID, e.id)
	}
	if e.zone != nil {
		ae.Bytes(ctaZone, e.zone)
	}
	attrs, err := ae.Encode()
	if err != nil {
		return err
	}
	_, err = c.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_CTNETLINK<<8 | ctMsgDelete),
			Flags: netlink.Request | netlink.Acknowledge,
		},
		Data: append([]byte{e.family, unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
	return err
}

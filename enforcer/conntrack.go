package enforcer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/podwall/podwall/policylib"
)

// ctnetlink constants (linux/netfilter/nfnetlink_conntrack.h).
const (
	ctMsgGet      = 1
	ctMsgDelete   = 2
	ctMsgGetStats = 5

	ctaStatsGlobalEntries = 1

	ctaTupleOrig  = 1
	ctaTupleReply = 2
	ctaID         = 12
	ctaZone       = 18
	ctaFilter     = 25

	ctaTupleIP    = 1
	ctaTupleProto = 2

	ctaIPv4Src = 1
	ctaIPv4Dst = 2
	ctaIPv6Src = 3
	ctaIPv6Dst = 4

	ctaProtoNum     = 1
	ctaProtoSrcPort = 2
	ctaProtoDstPort = 3

	ctaFilterOrigFlags  = 1
	ctaFilterReplyFlags = 2
	ctaFilterFlagIPSrc  = 1 << 0 // CTA_FILTER_F_CTA_IP_SRC
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

// ctKey selects the conntrack entries of flows from an address (its
// original source) or, with reply set, to it (the source of its reply,
// which is the real destination after any DNAT). A change that narrows a
// pod's ingress selects flows to the pod, or from the peers it lost; one
// that narrows its egress, flows from the pod, or to the peers it lost.
type ctKey struct {
	addr  netip.Addr
	reply bool
}

func (k ctKey) selects(e *ctEntry) bool {
	if k.reply {
		return e.dst == k.addr
	}
	return e.src == k.addr
}

// maxFilteredDumps is how many keys cleanup may dump one by one, each
// with the kernel's dump filter (CTA_FILTER, Linux 5.8), which sends only
// the entries a key selects; past it one unfiltered dump serves them all.
const maxFilteredDumps = 4

// ctEntriesPerWalk is how many entries copying to user space and parsing
// costs about as much as the kernel's walk of its conntrack hash table:
// each dump walks every bucket of the table, which all network namespaces
// share (262,144 buckets on a 24 GiB machine, some milliseconds), even
// when this namespace holds nothing. Filtered dumps pay a walk each, one
// unfiltered dump a walk and a copy of every entry, so filtering pays
// only when the namespace holds more entries than the extra walks cost.
const ctEntriesPerWalk = 4096

// ctDumper dumps conntrack entries for cleanup and remembers what the
// kernel's dump filter can do.
type ctDumper struct {
	// noFilter is set once a filtered dump returned an entry its filter
	// excludes: the kernel predates CTA_FILTER and ignored it.
	noFilter bool
	// alwaysFilter makes tests take the filtered path whatever the
	// namespace holds.
	alwaysFilter bool
}

// cut deletes the conntrack entries that a key selects and whose flow rs
// denies, and counts in st the dumps, the entries read and the entries
// deleted. Entries that vanish meanwhile are not errors.
func (d *ctDumper) cut(ctx context.Context, netns int, keys map[ctKey]bool, rs *Ruleset, st *Stats) error {
	if len(keys) == 0 {
		return nil
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return fmt.Errorf("dial ctnetlink: %w", err)
	}
	defer c.Close()
	cu := &ctCutter{c: c, rs: rs, seen: map[string]bool{}}
	defer func() { st.ConntrackDeleted = cu.deleted }()
	rest := keys
	if d.filter(c, keys) {
		rest = map[ctKey]bool{}
		for k := range keys {
			if k.addr.Is6() {
				rest[k] = true
				continue
			}
			msgs, err := c.Execute(dumpRequest(&k, 0))
			st.ConntrackDumps++
			st.ConntrackRead += len(msgs)
			// A kernel that refuses the filter, or ignores it (and sends
			// entries it excludes), gets unfiltered dumps from now on.
			filtered := err == nil
			for _, m := range msgs {
				if e, ok := parseCtEntry(m.Data); ok && !k.selects(&e) {
					filtered = false
					break
				}
			}
			if !filtered {
				d.noFilter = true
				rest = keys
				break
			}
			if err := cu.consider(ctx, msgs, map[ctKey]bool{k: true}); err != nil {
				return err
			}
		}
	}
	if len(rest) > 0 {
		msgs, err := c.Execute(dumpRequest(nil, dumpFamily(rest)))
		if err != nil {
			return fmt.Errorf("dump conntrack: %w", err)
		}
		st.ConntrackDumps++
		st.ConntrackRead += len(msgs)
		if err := cu.consider(ctx, msgs, rest); err != nil {
			return err
		}
	}
	return errors.Join(cu.errs...)
}

// filter reports whether to dump keys one by one with the kernel's filter,
// rather than all together in one unfiltered dump: when the kernel
// filters, the keys are few and the entries to copy otherwise many.
// IPv6 keys are never filtered: the kernel's IPv6 address filter is
// inverted (it returns every entry but the key's, as of Linux 6.18), so
// they go to one dump of the IPv6 family.
func (d *ctDumper) filter(c *netlink.Conn, keys map[ctKey]bool) bool {
	if d.noFilter || len(keys) > maxFilteredDumps {
		return false
	}
	walks, v6 := 0, false
	for k := range keys {
		if k.addr.Is6() {
			v6 = true
		} else {
			walks++
		}
	}
	if v6 {
		walks++
	}
	if walks <= 1 {
		return walks == 1 && !v6 // one walk either way, with less to copy
	}
	if d.alwaysFilter {
		return true
	}
	n, err := ctEntries(c)
	return err != nil || n >= (walks-1)*ctEntriesPerWalk
}

// ctEntries returns how many conntrack entries the network namespace
// holds, which the kernel counts without walking its table. It reads the
// answer itself: the kernel marks it multipart but ends it with no done
// message, which netlink.Conn.Execute would wait for forever.
func ctEntries(c *netlink.Conn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	req := make([]byte, 20)
	binary.NativeEndian.PutUint32(req, 20)
	binary.NativeEndian.PutUint16(req[4:], unix.NFNL_SUBSYS_CTNETLINK<<8|ctMsgGetStats)
	binary.NativeEndian.PutUint16(req[6:], uint16(netlink.Request|netlink.Acknowledge))
	binary.NativeEndian.PutUint32(req[8:], 1)
	copy(req[16:], []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0})
	var serr error
	if err := raw.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return serr != unix.EAGAIN
	}); err != nil || serr != nil {
		return 0, errors.Join(err, serr)
	}
	if err := c.SetReadDeadline(time.Now().Add(replyTimeout)); err != nil {
		return 0, err
	}
	defer c.SetReadDeadline(time.Time{})
	count, found := 0, false
	buf := make([]byte, 8<<10)
	for {
		var n int
		var rerr error
		if err := raw.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN
		}); err != nil || rerr != nil {
			return 0, errors.Join(err, rerr)
		}
		for b := buf[:n]; len(b) >= 16; {
			l := int(binary.NativeEndian.Uint32(b))
			if l < 16 || l > len(b) {
				return 0, errors.New("malformed answer from the kernel")
			}
			typ, data := binary.NativeEndian.Uint16(b[4:]), b[16:l]
			b = b[min(len(b), (l+3)&^3):]
			switch {
			case typ == uint16(netlink.Error) && len(data) >= 4:
				if code := int32(binary.NativeEndian.Uint32(data)); code != 0 {
					return 0, unix.Errno(-code)
				}
				if !found {
					return 0, errors.New("no entry count in the conntrack statistics")
				}
				return count, nil // the acknowledgement ends the answer
			case typ == unix.NFNL_SUBSYS_CTNETLINK<<8|ctMsgGetStats && len(data) >= 4:
				ad, err := netlink.NewAttributeDecoder(data[4:])
				if err != nil {
					return 0, err
				}
				ad.ByteOrder = binary.BigEndian
				for ad.Next() {
					if ad.Type() == ctaStatsGlobalEntries {
						count, found = int(ad.Uint32()), true
					}
				}
			}
		}
	}
}

// dumpFamily returns the address family a dump for keys needs: AF_INET or
// AF_INET6 when all keys are of one, AF_UNSPEC (both, in one walk of the
// table) otherwise.
func dumpFamily(keys map[ctKey]bool) uint8 {
	v4, v6 := false, false
	for k := range keys {
		v4, v6 = v4 || k.addr.Is4(), v6 || k.addr.Is6()
	}
	switch {
	case v4 && !v6:
		return unix.AF_INET
	case v6 && !v4:
		return unix.AF_INET6
	}
	return unix.AF_UNSPEC
}

// dumpRequest asks for the conntrack entries a key selects (filtered by
// the kernel), or with a nil key for those of one address family
// (AF_UNSPEC: all).
func dumpRequest(k *ctKey, fam uint8) netlink.Message {
	m := netlink.Message{Header: netlink.Header{
		Type:  netlink.HeaderType(unix.NFNL_SUBSYS_CTNETLINK<<8 | ctMsgGet),
		Flags: netlink.Request | netlink.Dump,
	}}
	if k == nil {
		m.Data = []byte{fam, unix.NFNETLINK_V0, 0, 0}
		return m
	}
	ipAttr, fam := uint16(ctaIPv4Src), uint8(unix.AF_INET) // the filter needs the family
	if k.addr.Is6() {
		ipAttr, fam = ctaIPv6Src, unix.AF_INET6
	}
	tuple, flags := uint16(ctaTupleOrig), uint16(ctaFilterOrigFlags)
	if k.reply {
		tuple, flags = ctaTupleReply, ctaFilterReplyFlags
	}
	ae := netlink.NewAttributeEncoder()
	ae.Nested(tuple|unix.NLA_F_NESTED, func(ae *netlink.AttributeEncoder) error {
		ae.Nested(ctaTupleIP|unix.NLA_F_NESTED, func(ae *netlink.AttributeEncoder) error {
			ae.Bytes(ipAttr, k.addr.AsSlice())
			return nil
		})
		return nil
	})
	ae.Nested(ctaFilter|unix.NLA_F_NESTED, func(ae *netlink.AttributeEncoder) error {
		ae.Uint32(flags, ctaFilterFlagIPSrc)
		return nil
	})
	attrs, _ := ae.Encode() // cannot fail: fixed, well-formed attributes
	m.Data = append([]byte{fam, unix.NFNETLINK_V0, 0, 0}, attrs...)
	return m
}

// ctCutter deletes the denied entries among dumped ones, each once.
type ctCutter struct {
	c       *netlink.Conn
	rs      *Ruleset
	seen    map[string]bool // original tuples considered, as two dumps may both hold an entry
	deleted int
	errs    []error
}

// consider deletes the entries of msgs that a key selects and whose flow
// the ruleset denies.
func (cu *ctCutter) consider(ctx context.Context, msgs []netlink.Message, keys map[ctKey]bool) error {
	for _, m := range msgs {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, ok := parseCtEntry(m.Data)
		if !ok || !keys[ctKey{addr: e.src}] && !keys[ctKey{addr: e.dst, reply: true}] || cu.seen[string(e.orig)] {
			continue
		}
		cu.seen[string(e.orig)] = true
		if cu.rs.Allowed(e.src, e.dst, ctProtocol(e.proto), int32(e.dport)) {
			continue
		}
		if err := deleteCtEntry(cu.c, e); err != nil {
			if !errors.Is(err, unix.ENOENT) {
				cu.errs = append(cu.errs, fmt.Errorf("delete conntrack entry %s -> %s proto %d port %d: %w", e.src, e.dst, e.proto, e.dport, err))
			}
			continue
		}
		cu.deleted++
	}
	return nil
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

package enforcer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The Applier speaks nf_tables' netlink protocol itself rather than through
// github.com/google/nftables' Conn, which asks the kernel to acknowledge
// every message and to echo every rule back, then reads and parses one
// answer per message, and marshals each element through several
// allocations. Here a batch is encoded straight into one buffer and only
// its last message asks for an acknowledgement. That is safe because the
// kernel handles a batch synchronously in sendmsg and then answers, in
// message order, every message that failed (nfnetlink reports errors
// whether or not they were asked for) and the acknowledged last one, or
// reports a failed commit against the batch header: so the answer to the
// last message, or an error for the batch header, ends the answer, and its
// size does not grow with the batch. Rule expressions are still encoded by
// github.com/google/nftables/expr.

// nlMsg describes one message of a batch, for errors.
type nlMsg struct {
	typ  uint16 // NFT_MSG_*
	name string // the table, chain or set it acts on
}

func (m nlMsg) String() string { return msgVerbs[m.typ] + m.name }

var msgVerbs = map[uint16]string{
	unix.NFT_MSG_NEWTABLE:   "add table ",
	unix.NFT_MSG_DELTABLE:   "delete table ",
	unix.NFT_MSG_NEWCHAIN:   "add chain ",
	unix.NFT_MSG_DELCHAIN:   "delete chain ",
	unix.NFT_MSG_NEWSET:     "add set ",
	unix.NFT_MSG_DELSET:     "delete set ",
	unix.NFT_MSG_NEWSETELEM: "add elements to set ",
	unix.NFT_MSG_DELSETELEM: "delete elements from set ",
	unix.NFT_MSG_NEWRULE:    "add rule to chain ",
}

// nlBatch builds the messages of one transaction in one buffer, as they
// are sent: a batch begin message, the commands, and (when sent) a batch
// end message. The sequence number of the batch begin is 1, of command i
// i+2.
type nlBatch struct {
	table string
	buf   attrBuf
	msgs  []nlMsg
	cur   int // offset of the open command's header, or -1
	setID uint32

	// Elements added and deleted.
	added, deleted int

	// The open command may be an element message for elemsOp on set
	// elemsSet, with its element list open at elemList: the list is one
	// netlink attribute, whose length has 16 bits, so a set's elements are
	// spread over messages of at most elemListMax bytes.
	elemList int // offset of the open NFTA_SET_ELEM_LIST_ELEMENTS, or -1
	elemsOp  elemOp
	elemsSet string

	rx []byte // the buffer answers are read into
}

// newNLBatch starts a batch for table in buf's storage.
func newNLBatch(table string, buf []byte) nlBatch {
	nb := nlBatch{table: table, buf: attrBuf{buf[:0]}, cur: -1, elemList: -1}
	nb.frame(unix.NFNL_MSG_BATCH_BEGIN, 1)
	return nb
}

// frame appends a batch begin or end message.
func (nb *nlBatch) frame(typ uint16, seq uint32) {
	b := nb.buf.b
	b = binary.NativeEndian.AppendUint32(b, 20)
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, uint16(netlink.Request))
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	nb.buf.b = append(b, unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES)
}

// elemListMax bounds the element list of one message, below the 64 KiB an
// attribute can hold.
const elemListMax = 60 << 10

// attrBuf appends netlink attributes.
type attrBuf struct{ b []byte }

func (a *attrBuf) hdr(typ uint16, n int) {
	a.b = binary.NativeEndian.AppendUint16(a.b, uint16(4+n))
	a.b = binary.NativeEndian.AppendUint16(a.b, typ)
}

func (a *attrBuf) pad() {
	for len(a.b)%4 != 0 {
		a.b = append(a.b, 0)
	}
}

func (a *attrBuf) bytes(typ uint16, v []byte) {
	a.hdr(typ, len(v))
	a.b = append(a.b, v...)
	a.pad()
}

func (a *attrBuf) str(typ uint16, s string) {
	a.hdr(typ, len(s)+1)
	a.b = append(a.b, s...)
	a.b = append(a.b, 0)
	a.pad()
}

func (a *attrBuf) u32(typ uint16, v uint32) {
	a.hdr(typ, 4)
	a.b = binary.BigEndian.AppendUint32(a.b, v)
}

// begin opens a nested attribute and returns its offset for end.
func (a *attrBuf) begin(typ uint16) int {
	off := len(a.b)
	a.hdr(typ|unix.NLA_F_NESTED, 0)
	return off
}

func (a *attrBuf) end(off int) {
	binary.NativeEndian.PutUint16(a.b[off:], uint16(len(a.b)-off))
}

// begin starts a command: its header (completed by end) and the nfgenmsg
// header of family inet. The caller appends the attributes.
func (nb *nlBatch) begin(typ uint16, flags netlink.HeaderFlags, name string) *attrBuf {
	nb.end()
	nb.cur = len(nb.buf.b)
	seq := uint32(len(nb.msgs) + 2)
	b := nb.buf.b
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint16(b, unix.NFNL_SUBSYS_NFTABLES<<8|typ)
	b = binary.NativeEndian.AppendUint16(b, uint16(netlink.Request|flags))
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	nb.buf.b = append(b, unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0)
	nb.msgs = append(nb.msgs, nlMsg{typ: typ, name: name})
	return &nb.buf
}

// end completes the open command, if any.
func (nb *nlBatch) end() {
	if nb.cur < 0 {
		return
	}
	if nb.elemList >= 0 {
		nb.buf.end(nb.elemList)
		nb.elemList = -1
	}
	binary.NativeEndian.PutUint32(nb.buf.b[nb.cur:], uint32(len(nb.buf.b)-nb.cur))
	nb.cur = -1
}

func (nb *nlBatch) addTable(name string) {
	a := nb.begin(unix.NFT_MSG_NEWTABLE, netlink.Create, name)
	a.str(unix.NFTA_TABLE_NAME, name)
	a.u32(unix.NFTA_TABLE_FLAGS, 0)
}

func (nb *nlBatch) delTable(name string) {
	a := nb.begin(unix.NFT_MSG_DELTABLE, 0, name)
	a.str(unix.NFTA_TABLE_NAME, name)
}

// baseHook says where a base chain hooks in.
type baseHook struct {
	hook     uint32 // NF_INET_*
	priority int32
}

func (nb *nlBatch) addChain(name string, base *baseHook) {
	a := nb.begin(unix.NFT_MSG_NEWCHAIN, netlink.Create, name)
	a.str(unix.NFTA_CHAIN_TABLE, nb.table)
	a.str(unix.NFTA_CHAIN_NAME, name)
	if base != nil {
		h := a.begin(unix.NFTA_CHAIN_HOOK)
		a.u32(unix.NFTA_HOOK_HOOKNUM, base.hook)
		a.u32(unix.NFTA_HOOK_PRIORITY, uint32(base.priority))
		a.end(h)
		a.u32(unix.NFTA_CHAIN_POLICY, 1) // NF_ACCEPT
		a.str(unix.NFTA_CHAIN_TYPE, "filter")
	}
}

func (nb *nlBatch) delChain(name string) {
	a := nb.begin(unix.NFT_MSG_DELCHAIN, 0, name)
	a.str(unix.NFTA_CHAIN_TABLE, nb.table)
	a.str(unix.NFTA_CHAIN_NAME, name)
}

// setKind is the type of a set or map.
type setKind uint8

const (
	setAddr4    setKind = iota // ipv4_addr, flags interval (rbtree)
	setAddr6                   // ipv6_addr, flags interval (rbtree)
	setVmap4                   // ipv4_addr : verdict (hash)
	setVmap6                   // ipv6_addr : verdict (hash)
	setPortVmap                // inet_proto . inet_service : verdict, flags interval (pipapo)
)

// Set datatypes as nft numbers them (nftables' datatype ids), and the
// lengths the kernel stores.
const (
	typeIPv4        = 7
	typeIPv6        = 8
	typeInetProto   = 12
	typeInetService = 13
	nftSetConcat    = 0x80 // NFT_SET_CONCAT
	nftaSetDescCat  = 2    // NFTA_SET_DESC_CONCAT
	nftaElemKeyEnd  = 10   // NFTA_SET_ELEM_KEY_END
	nftaSetFieldLen = 1    // NFTA_SET_FIELD_LEN
)

// addSet declares a set and returns its transaction id, which rules
// created in the same batch refer to it by.
func (nb *nlBatch) addSet(name string, kind setKind) uint32 {
	nb.setID++
	a := nb.begin(unix.NFT_MSG_NEWSET, netlink.Create, name)
	a.str(unix.NFTA_SET_TABLE, nb.table)
	a.str(unix.NFTA_SET_NAME, name)
	var flags, keyType, keyLen uint32
	vmap := false
	switch kind {
	case setAddr4:
		flags, keyType, keyLen = unix.NFT_SET_INTERVAL, typeIPv4, 4
	case setAddr6:
		flags, keyType, keyLen = unix.NFT_SET_INTERVAL, typeIPv6, 16
	case setVmap4:
		flags, keyType, keyLen, vmap = unix.NFT_SET_MAP, typeIPv4, 4, true
	case setVmap6:
		flags, keyType, keyLen, vmap = unix.NFT_SET_MAP, typeIPv6, 16, true
	case setPortVmap:
		flags = unix.NFT_SET_INTERVAL | unix.NFT_SET_MAP | nftSetConcat
		keyType, keyLen, vmap = typeInetProto<<6|typeInetService, 8, true
	}
	a.u32(unix.NFTA_SET_FLAGS, flags)
	a.u32(unix.NFTA_SET_KEY_TYPE, keyType)
	a.u32(unix.NFTA_SET_KEY_LEN, keyLen)
	a.u32(unix.NFTA_SET_ID, nb.setID)
	if vmap {
		a.u32(unix.NFTA_SET_DATA_TYPE, unix.NFT_DATA_VERDICT)
		a.u32(unix.NFTA_SET_DATA_LEN, 0)
	}
	if kind == setPortVmap {
		// The lengths of the concatenated fields: inet_proto, inet_service.
		d := a.begin(unix.NFTA_SET_DESC)
		c := a.begin(nftaSetDescCat)
		for _, n := range []uint32{1, 2} {
			f := a.begin(unix.NFTA_LIST_ELEM)
			a.u32(nftaSetFieldLen, n)
			a.end(f)
		}
		a.end(c)
		a.end(d)
	}
	if flags&unix.NFT_SET_INTERVAL != 0 {
		// As nft writes it: the key is in network byte order.
		a.bytes(unix.NFTA_SET_USERDATA, userdata.AppendUint32(nil, userdata.NFTNL_UDATA_SET_KEYBYTEORDER, 2))
	}
	return nb.setID
}

func (nb *nlBatch) delSet(name string) {
	a := nb.begin(unix.NFT_MSG_DELSET, 0, name)
	a.str(unix.NFTA_SET_TABLE, nb.table)
	a.str(unix.NFTA_SET_NAME, name)
}

// elemOp selects adding or deleting elements.
type elemOp uint16

const (
	opAdd = elemOp(unix.NFT_MSG_NEWSETELEM)
	opDel = elemOp(unix.NFT_MSG_DELSETELEM)
)

// elem appends one element to the open element message of set and op,
// opening one when needed. Consecutive elems of one set and op share
// messages.
func (nb *nlBatch) elem(op elemOp, set string, e elem) {
	a := &nb.buf
	if nb.elemList < 0 || nb.elemsOp != op || nb.elemsSet != set || len(a.b)-nb.elemList > elemListMax {
		flags := netlink.Create
		if op == opDel {
			flags = 0
		}
		nb.begin(uint16(op), flags, set)
		a.str(unix.NFTA_SET_ELEM_LIST_TABLE, nb.table)
		a.str(unix.NFTA_SET_ELEM_LIST_SET, set)
		nb.elemList = a.begin(unix.NFTA_SET_ELEM_LIST_ELEMENTS)
		nb.elemsOp, nb.elemsSet = op, set
	}
	el := a.begin(unix.NFTA_LIST_ELEM)
	k := a.begin(unix.NFTA_SET_ELEM_KEY)
	a.bytes(unix.NFTA_DATA_VALUE, e.key)
	a.end(k)
	if e.keyEnd != nil {
		k := a.begin(nftaElemKeyEnd)
		a.bytes(unix.NFTA_DATA_VALUE, e.keyEnd)
		a.end(k)
	}
	if e.end {
		a.u32(unix.NFTA_SET_ELEM_FLAGS, unix.NFT_SET_ELEM_INTERVAL_END)
	}
	if e.chain != "" {
		var code int32 = unix.NFT_JUMP
		if e.goTo {
			code = unix.NFT_GOTO
		}
		d := a.begin(unix.NFTA_SET_ELEM_DATA)
		v := a.begin(unix.NFTA_DATA_VERDICT)
		a.u32(unix.NFTA_VERDICT_CODE, uint32(code))
		a.str(unix.NFTA_VERDICT_CHAIN, e.chain)
		a.end(v)
		a.end(d)
	}
	a.end(el)
	if op == opAdd {
		nb.added++
	} else {
		nb.deleted++
	}
}

func (nb *nlBatch) addRule(chain string, exprs []expr.Any) error {
	a := nb.begin(unix.NFT_MSG_NEWRULE, netlink.Create|netlink.Append, chain)
	a.str(unix.NFTA_RULE_TABLE, nb.table)
	a.str(unix.NFTA_RULE_CHAIN, chain)
	l := a.begin(unix.NFTA_RULE_EXPRESSIONS)
	for _, e := range exprs {
		b, err := expr.Marshal(unix.NFPROTO_INET, e)
		if err != nil {
			return fmt.Errorf("rule in chain %s: %w", chain, err)
		}
		el := a.begin(unix.NFTA_LIST_ELEM)
		a.b = append(a.b, b...)
		a.end(el)
	}
	a.end(l)
	return nil
}

// replyTimeout bounds the wait for the kernel's answer. The kernel handles
// the batch and queues its answer before sendmsg returns, so the answer is
// there at once; only a batch the kernel cannot parse goes unanswered.
const replyTimeout = 10 * time.Second

// send sends the batch in one sendmsg, with only its last command asking
// for an acknowledgement, and waits for the outcome.
func (nb *nlBatch) send(netns int) error {
	if len(nb.msgs) == 0 {
		return nil
	}
	nb.end()
	// Ask for an acknowledgement of the last command.
	last := nb.cur
	for off := 0; off < len(nb.buf.b); off += int(binary.NativeEndian.Uint32(nb.buf.b[off:])) {
		last = off
	}
	flags := binary.NativeEndian.Uint16(nb.buf.b[last+6:])
	binary.NativeEndian.PutUint16(nb.buf.b[last+6:], flags|uint16(netlink.Acknowledge))
	lastSeq := uint32(len(nb.msgs) + 1)
	nb.frame(unix.NFNL_MSG_BATCH_END, lastSeq+1)

	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return fmt.Errorf("dial nf_tables: %w", err)
	}
	defer c.Close()
	// Errors name the failing message without echoing it, and carry the
	// kernel's explanation when it has one.
	_ = c.SetOption(netlink.CapAcknowledge, true)
	_ = c.SetOption(netlink.ExtendedAcknowledge, true)
	if err := forceBuffers(c, len(nb.buf.b)+64<<10, 1<<20); err != nil {
		return fmt.Errorf("socket buffers: %w", err)
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), nb.buf.b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return serr != unix.EAGAIN
	})
	if err = errors.Join(err, serr); err != nil {
		return fmt.Errorf("send the batch (%d bytes): %w", len(nb.buf.b), err)
	}
	if err := c.SetReadDeadline(time.Now().Add(replyTimeout)); err != nil {
		return err
	}
	// An answer is one message per datagram: an acknowledgement, or an
	// error with the kernel's explanation (and, should the kernel not cap
	// it, the refused message, at most an element message's size).
	if len(nb.rx) < 128<<10 {
		nb.rx = make([]byte, 128<<10)
	}
	buf := nb.rx
	var errs []error
	for {
		var n int
		var rerr error
		err := raw.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN
		})
		if err = errors.Join(err, rerr); err != nil {
			return errors.Join(append(errs, fmt.Errorf("read the kernel's answer: %w", err))...)
		}
		for b := buf[:n]; len(b) >= 16; {
			l := int(binary.NativeEndian.Uint32(b))
			if l < 16 || l > len(b) {
				return errors.Join(append(errs, errors.New("malformed answer from the kernel"))...)
			}
			typ := netlink.HeaderType(binary.NativeEndian.Uint16(b[4:]))
			seq := binary.NativeEndian.Uint32(b[8:])
			r := netlink.Message{
				Header: netlink.Header{Type: typ, Flags: netlink.HeaderFlags(binary.NativeEndian.Uint16(b[6:])), Sequence: seq},
				Data:   b[16:l],
			}
			b = b[min(len(b), (l+3)&^3):]
			if typ != netlink.Error || len(r.Data) < 4 || seq < 1 || seq > lastSeq {
				continue
			}
			if code := int32(binary.NativeEndian.Uint32(r.Data)); code != 0 {
				what := "batch"
				if seq >= 2 {
					what = nb.msgs[seq-2].String()
				}
				e := error(unix.Errno(-code))
				if msg := extAckMsg(r); msg != "" {
					e = fmt.Errorf("%w (%s)", e, msg)
				}
				errs = append(errs, fmt.Errorf("%s: %w", what, e))
				if seq == 1 {
					return errors.Join(errs...) // the commit failed: nothing follows
				}
			}
			if seq == lastSeq {
				return errors.Join(errs...)
			}
		}
	}
}

// extAckMsg returns the text of an extended acknowledgement, if any.
func extAckMsg(m netlink.Message) string {
	if m.Header.Flags&netlink.AcknowledgeTLVs == 0 || len(m.Data) < 20 {
		return ""
	}
	off := 20 // errno and the request's header
	if m.Header.Flags&netlink.Capped == 0 {
		off = 4 + int(binary.NativeEndian.Uint32(m.Data[4:]))
	}
	if off > len(m.Data) {
		return ""
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[off:])
	if err != nil {
		return ""
	}
	for ad.Next() {
		if ad.Type() == unix.NLMSGERR_ATTR_MSG {
			return ad.String()
		}
	}
	return ""
}

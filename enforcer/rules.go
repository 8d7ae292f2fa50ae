package enforcer

import (
	"slices"
	"strconv"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/podwall/podwall/policylib"
)

// The table uses a small, fixed vocabulary of rules. Each has a text form
// (for Render) and the expressions nft itself generates for that text, so
// a table installed over netlink lists exactly like one loaded with nft -f.
type ruleKind uint8

const (
	ruleEstablished ruleKind = iota // ct state established,related accept
	ruleInvalid                     // ct state invalid drop
	ruleNeighbor                    // icmpv6 type 133-137 accept (neighbour discovery)
	ruleDispatch                    // ip saddr vmap @map
	ruleAny                         // ip saddr @set return
	rulePorts                       // meta l4proto . th dport vmap @map
	ruleDrop                        // drop
)

type rule struct {
	kind  ruleKind
	v6    bool
	saddr bool   // match the source address, else the destination
	set   string // the set or map looked up
}

type baseChain struct {
	name  string // also the hook
	rules []rule
}

// baseChains are the hooked chains. forward carries pod-to-pod and
// pod-to-elsewhere traffic (bridged traffic too, with
// bridge-nf-call-iptables=1): the source's egress, then the destination's
// ingress. input carries pod-to-node traffic: the source's egress. output
// carries node-to-pod traffic: the destination's ingress, unless the host
// may reach its pods. IPv6 neighbour discovery always passes (see
// ndpFirst). Invalid packets are dropped on forward only: the node's own
// traffic is not ours to judge.
func baseChains(allowHost bool) []baseChain {
	egress := []rule{
		{kind: ruleDispatch, saddr: true, set: mapName(policylib.Egress, false)},
		{kind: ruleDispatch, saddr: true, v6: true, set: mapName(policylib.Egress, true)},
	}
	ingress := []rule{
		{kind: ruleDispatch, set: mapName(policylib.Ingress, false)},
		{kind: ruleDispatch, v6: true, set: mapName(policylib.Ingress, true)},
	}
	head := func(invalid bool) []rule {
		// Neighbour discovery before the invalid check: conntrack leaves
		// most of it untracked, but calls a redirect invalid.
		rs := []rule{{kind: ruleEstablished}, {kind: ruleNeighbor}}
		if invalid {
			rs = append(rs, rule{kind: ruleInvalid})
		}
		return rs
	}
	chains := []baseChain{
		{chainForward, slices.Concat(head(true), egress, ingress)},
		{chainInput, slices.Concat(head(false), egress)},
	}
	if !allowHost {
		chains = append(chains, baseChain{chainOutput, slices.Concat(head(false), ingress)})
	}
	return chains
}

// podChainRules are the rules of one pod direction's chain: per address
// family of the pod, the any-port set, returning on a match to the base
// chain, which goes on to the other end's check; then the port map, which
// sends the packet on (goto) to the chain of its protocol and port range,
// if any; then drop. Ingress matches the source address, egress the
// destination.
func podChainRules(dir policylib.Direction, chain string, v4, v6 bool) []rule {
	saddr := dir == policylib.Ingress
	var rs []rule
	for _, fam := range []bool{false, true} {
		if fam && !v6 || !fam && !v4 {
			continue
		}
		rs = append(rs, rule{kind: ruleAny, v6: fam, saddr: saddr, set: anySetName(chain, fam)})
	}
	return append(rs, rule{kind: rulePorts, set: portMapName(chain)}, rule{kind: ruleDrop})
}

// portChainRules are the rules of the chain of one protocol and port range
// of a pod direction: per address family of the pod, the set of the peers
// allowed there, returning on a match to the base chain (the pod's chain
// was entered by goto); then drop.
func portChainRules(dir policylib.Direction, chain string, v4, v6 bool) []rule {
	saddr := dir == policylib.Ingress
	var rs []rule
	for _, fam := range []bool{false, true} {
		if fam && !v6 || !fam && !v4 {
			continue
		}
		rs = append(rs, rule{kind: ruleAny, v6: fam, saddr: saddr, set: peersSetName(chain, fam)})
	}
	return append(rs, rule{kind: ruleDrop})
}

// ndpFirst to ndpLast are the ICMPv6 types of neighbour discovery (RFC
// 4861): router solicitation (133) and advertisement (134), neighbour
// solicitation (135) and advertisement (136), and redirect (137). They pass
// whatever the policies say, before any pod's chain, as Calico lets them:
// IPv6 does not work without them (address resolution, duplicate address
// detection, finding a router, learning a better first hop), NetworkPolicy
// cannot express ICMP rules to allow them, and they often carry a pod's
// address (a solicitation for a global address is sent from one), so an
// egress-isolated pod would otherwise lose its neighbours and its router.
// They are confined to the link: a receiver drops any whose hop limit is
// not 255, so no router forwards them and they open no path beyond it.
const (
	ndpFirst = 133
	ndpLast  = 137
)

func (r rule) text() string {
	ip, addr := "ip", "daddr"
	if r.v6 {
		ip = "ip6"
	}
	if r.saddr {
		addr = "saddr"
	}
	switch r.kind {
	case ruleEstablished:
		return "ct state established,related accept"
	case ruleInvalid:
		return "ct state invalid drop"
	case ruleNeighbor:
		return "icmpv6 type " + strconv.Itoa(ndpFirst) + "-" + strconv.Itoa(ndpLast) + " accept"
	case ruleDispatch:
		return ip + " " + addr + " vmap @" + r.set
	case ruleAny:
		return ip + " " + addr + " @" + r.set + " return"
	case rulePorts:
		return "meta l4proto . th dport vmap @" + r.set
	}
	return "drop"
}

// Registers as nft allocates them: 1 is the first 16-byte register; 9 and
// up are 4-byte registers (9 is the second word of 1).
const (
	reg1 = 1
	reg9 = 9
)

// exprs returns the rule's expressions; setID is the transaction id of the
// set when it is created in the same batch (0 otherwise: looked up by name).
func (r rule) exprs(setID uint32) []expr.Any {
	switch r.kind {
	case ruleEstablished:
		return ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED, expr.VerdictAccept)
	case ruleInvalid:
		return ctState(expr.CtStateBitINVALID, expr.VerdictDrop)
	case ruleNeighbor:
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.NFPROTO_IPV6}},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_ICMPV6}},
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Cmp{Op: expr.CmpOpGte, Register: reg1, Data: []byte{ndpFirst}},
			&expr.Cmp{Op: expr.CmpOpLte, Register: reg1, Data: []byte{ndpLast}},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}
	case ruleDispatch:
		return append(r.loadAddr(),
			&expr.Lookup{SourceRegister: reg1, DestRegister: 0, IsDestRegSet: true, SetName: r.set, SetID: setID})
	case ruleAny:
		return append(r.loadAddr(),
			&expr.Lookup{SourceRegister: reg1, SetName: r.set, SetID: setID},
			&expr.Verdict{Kind: expr.VerdictReturn})
	case rulePorts:
		// The protocol, padded to 4 bytes, then the port: the map's key.
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Byteorder{SourceRegister: reg1, DestRegister: reg1, Op: expr.ByteorderHton, Len: 1, Size: 2},
			&expr.Payload{DestRegister: reg9, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: reg1, DestRegister: 0, IsDestRegSet: true, SetName: r.set, SetID: setID},
		}
	}
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}
}

// loadAddr checks the family and loads the source or destination address
// into register 1.
func (r rule) loadAddr() []expr.Any {
	nfproto, offset, length := byte(unix.NFPROTO_IPV4), uint32(16), uint32(4)
	if r.saddr {
		offset = 12
	}
	if r.v6 {
		nfproto, offset, length = unix.NFPROTO_IPV6, 24, 16
		if r.saddr {
			offset = 8
		}
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{nfproto}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: length},
	}
}

func ctState(bits uint32, verdict expr.VerdictKind) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: []byte{0, 0, 0, 0}},
		&expr.Verdict{Kind: verdict},
	}
}

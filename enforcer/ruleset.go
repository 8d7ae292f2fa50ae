package enforcer

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	"github.com/podwall/podwall/policylib"
	"github.com/podwall/podwall/policylib/addrset"
)

// Ruleset is what the kernel must do for a node's local pods: for every pod
// and direction that policies isolate, the peers it may talk to on any port
// and the peers it may talk to per protocol and port. It is a pure value,
// built by Compile (a Ruleset built by hand lacks the address index Render,
// Allowed and Apply use), rendered by Render and installed by an Applier;
// it never changes after Compile returns and is safe for concurrent reads.
type Ruleset struct {
	// Table is the nftables table (family inet) the rules live in.
	Table string
	// AllowHostToLocalPods: traffic the node originates reaches local pods
	// whatever their ingress rules say.
	AllowHostToLocalPods bool
	// NodeAddrs are the node's own addresses, sorted.
	NodeAddrs []netip.Addr
	// Pods are the local pods that have an address, sorted by namespace and
	// name.
	Pods []PodRuleset
	// Conflicts lists addresses that more than one local pod with rules
	// claims (a stale pod whose address was reused). Such an address is
	// dispatched to the first of the pods in Pods order only; the kernel
	// cannot hold two verdicts for one key.
	Conflicts []AddrConflict

	byAddr map[netip.Addr]int // address -> index in Pods, for pods with rules
	hosts  map[netip.Addr]bool
}

// AddrConflict is an address claimed by several local pods.
type AddrConflict struct {
	Addr netip.Addr
	Pods []types.NamespacedName // the first one gets the address
}

// PodRuleset is one local pod's rules. A nil direction is open: no policy
// isolates it, or a rule allows every peer on every port, so the kernel
// needs no chain for it.
type PodRuleset struct {
	Pod   types.NamespacedName
	Addrs []netip.Addr // IPv4 first, then IPv6
	// Ingress judges traffic to the pod by its source address; Egress judges
	// traffic from the pod by its destination address.
	Ingress, Egress *Rules
}

// Rules is what one isolated direction of a pod allows; everything else is
// dropped.
type Rules struct {
	// Policies are the NetworkPolicies that isolate the direction.
	Policies []types.NamespacedName
	// Any holds the peers allowed on every protocol and port, ICMP
	// included (rules without ports).
	Any addrset.Set
	// Ports are the peers allowed per protocol and port range, sorted by
	// protocol then port. Ranges of one protocol never overlap, as the
	// keys of an nftables interval map must not, and each range's Peers
	// are disjoint from Any, so every (peer, protocol, port) is in at most
	// one set element.
	Ports []PortRule
}

// PortRule allows Peers on one protocol (TCP, UDP or SCTP) and an
// inclusive port range.
type PortRule struct {
	Protocol    policylib.Protocol
	First, Last uint16
	Peers       addrset.Set
}

func (p PortRule) String() string {
	if p.First == p.Last {
		return fmt.Sprintf("%s/%d %s", p.Protocol, p.First, p.Peers)
	}
	return fmt.Sprintf("%s/%d-%d %s", p.Protocol, p.First, p.Last, p.Peers)
}

// Equal reports whether r and o allow the same traffic (and name the same
// policies).
func (r *Rules) Equal(o *Rules) bool {
	if r == o {
		return true // also what an unchanged pod's rules from a Compiler compare as
	}
	if r == nil || o == nil {
		return r == o
	}
	return slices.Equal(r.Policies, o.Policies) && r.Any.Equal(o.Any) &&
		slices.EqualFunc(r.Ports, o.Ports, func(a, b PortRule) bool {
			return a.Protocol == b.Protocol && a.First == b.First && a.Last == b.Last && a.Peers.Equal(b.Peers)
		})
}

// Permits reports whether r lets traffic with peer through on a protocol
// and port (ignored for ICMP). A nil Rules permits everything.
func (r *Rules) Permits(peer netip.Addr, proto policylib.Protocol, port int32) bool {
	if r == nil {
		return true
	}
	peer = peer.Unmap()
	if r.Any.Contains(peer) {
		return true
	}
	if !proto.HasPorts() {
		return false
	}
	for _, p := range r.Ports {
		if p.Protocol == proto && int32(p.First) <= port && port <= int32(p.Last) && p.Peers.Contains(peer) {
			return true
		}
	}
	return false
}

// Pod returns the rules of the local pod with address a, if one has rules.
func (r *Ruleset) Pod(a netip.Addr) (*PodRuleset, bool) {
	i, ok := r.byAddr[a.Unmap()]
	if !ok {
		return nil, false
	}
	return &r.Pods[i], true
}

// IsHost reports whether a is one of the node's own addresses.
func (r *Ruleset) IsHost(a netip.Addr) bool { return r.hosts[a.Unmap()] }

// Allowed reports whether the kernel, with this ruleset, lets a new
// connection from src to dst through on a protocol and port (ignored for
// ICMP and other protocols without ports), as this node sees it: the
// source's egress rules judge it when the source is a local pod with rules,
// and the destination's ingress rules when the destination is one. Traffic
// from a node address is the host's own: with AllowHostToLocalPods nothing
// judges it, otherwise only the destination's ingress. Pods on other nodes
// are plain addresses here; their own node judges their side.
func (r *Ruleset) Allowed(src, dst netip.Addr, proto policylib.Protocol, port int32) bool {
	if r.IsHost(src) {
		if r.AllowHostToLocalPods {
			return true
		}
	} else if p, ok := r.Pod(src); ok && !p.Egress.Permits(dst, proto, port) {
		return false
	}
	if p, ok := r.Pod(dst); ok && !p.Ingress.Permits(src, proto, port) {
		return false
	}
	return true
}

// Compile builds the ruleset of the local pods, the pods that run on this
// node (callers usually pick those whose spec.nodeName is the node's name).
// Every local pod must be known to the engine; pods without an address are
// left out, as the kernel cannot tell their traffic apart. A [Compiler]
// does the same incrementally.
func Compile(e *policylib.Engine, local []types.NamespacedName, opts Options) (*Ruleset, error) {
	return NewCompiler().Compile(e, local, opts)
}

// Compiler compiles rulesets as Compile does, but keeps each local pod's
// compiled rules from one Compile to the next and asks the engine again
// only for the pods marked stale and those it has not compiled before, so
// that the cost of a change follows the number of local pods it touches
// rather than the number of local pods. Asking the engine is most of
// Compile's cost: it builds each pod's peer address sets.
//
// The caller marks stale every local pod whose [policylib.Engine.PodRules]
// may have changed since the last Compile: the pods a changed policy may
// select (InvalidateNamespace), those isolated by a policy whose rules a
// changed pod or namespace may alter, as the engine's
// PoliciesDependingOnPod and PoliciesDependingOnNamespace name them before
// and after the change (InvalidateIsolatedBy), and changed pods themselves
// (Invalidate). A pod left unmarked keeps rules that may be out
// of date, so when in doubt, mark more; InvalidateAll starts afresh.
//
// A Compiler is not safe for concurrent use. Rulesets it returns share the
// rules of unchanged pods, which is safe as Rulesets never change.
type Compiler struct {
	pods       map[types.NamespacedName]*compiledPod
	stale      map[types.NamespacedName]bool // cached pods to ask the engine for again
	recompiled int                           // pods asked of the engine by the last Compile
}

// compiledPod is what a Compiler keeps of one local pod.
type compiledPod struct {
	rules PodRuleset // no Addrs: the pod has no address and is left out
	// isolating are the policies isolating each direction (indexed by
	// policylib.Direction), kept even when the compiled rules are nil
	// because a rule allows everything: a change to one of them can
	// still narrow the pod's rules.
	isolating [2][]types.NamespacedName
}

// NewCompiler returns a Compiler that has compiled nothing yet.
func NewCompiler() *Compiler {
	return &Compiler{pods: map[types.NamespacedName]*compiledPod{}, stale: map[types.NamespacedName]bool{}}
}

// The Invalidate methods return how many pods they newly marked stale.
// Only pods the Compiler holds can be marked (the others are asked for
// anyway); none marked means the next Compile returns the same rules as
// the last for every pod that was local then.

// Invalidate marks pods stale.
func (c *Compiler) Invalidate(pods ...types.NamespacedName) int {
	n := 0
	for _, k := range pods {
		n += c.mark(k)
	}
	return n
}

func (c *Compiler) mark(k types.NamespacedName) int {
	if _, ok := c.pods[k]; !ok || c.stale[k] {
		return 0
	}
	c.stale[k] = true
	return 1
}

// InvalidateAll marks every pod stale: the next Compile asks the engine
// for every local pod, as Compile does.
func (c *Compiler) InvalidateAll() int {
	n := 0
	for k := range c.pods {
		n += c.mark(k)
	}
	return n
}

// InvalidateNamespace marks stale every pod of a namespace, as a change to
// a NetworkPolicy there may select or unselect any of them (a policy
// selects pods of its own namespace only).
func (c *Compiler) InvalidateNamespace(namespace string) int {
	n := 0
	for k := range c.pods {
		if k.Namespace == namespace {
			n += c.mark(k)
		}
	}
	return n
}

// InvalidateIsolatedBy marks stale every pod that a policy for which
// affected returns true isolates in either direction, as compiled last.
// Pods already stale are skipped, so affected is not asked about their
// policies, which may have changed since.
func (c *Compiler) InvalidateIsolatedBy(affected func(policy types.NamespacedName) bool) int {
	n := 0
	for k, p := range c.pods {
		if c.stale[k] {
			continue
		}
	check:
		for _, pols := range p.isolating {
			for _, pol := range pols {
				if affected(pol) {
					n += c.mark(k)
					break check
				}
			}
		}
	}
	return n
}

// Recompiled is the number of local pods the last Compile asked the engine
// for; the others kept their rules.
func (c *Compiler) Recompiled() int { return c.recompiled }

// Compile builds the ruleset of the local pods, as the package's Compile
// does, asking the engine only for the pods that are stale or new to the
// Compiler. On success the Compiler forgets pods that are no longer local
// and clears every stale mark; on error the marks stay for the next try.
func (c *Compiler) Compile(e *policylib.Engine, local []types.NamespacedName, opts Options) (*Ruleset, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	rs := &Ruleset{
		Table:                opts.Table,
		AllowHostToLocalPods: *opts.AllowHostToLocalPods,
		byAddr:               map[netip.Addr]int{},
		hosts:                map[netip.Addr]bool{},
	}
	for _, a := range opts.NodeAddrs {
		a = a.Unmap()
		rs.NodeAddrs = append(rs.NodeAddrs, a)
		rs.hosts[a] = true
	}
	slices.SortFunc(rs.NodeAddrs, netip.Addr.Compare)

	keys := slices.Clone(local)
	slices.SortFunc(keys, compareKeys)
	keys = slices.Compact(keys)
	c.recompiled = 0
	for _, k := range keys {
		p, ok := c.pods[k]
		if !ok || c.stale[k] {
			pr, err := e.PodRules(k.Namespace, k.Name)
			if err != nil {
				return nil, fmt.Errorf("enforcer: local pod %s: %w", k, err)
			}
			p = compilePod(k, pr)
			c.pods[k] = p
			delete(c.stale, k)
			c.recompiled++
		}
		if len(p.rules.Addrs) > 0 {
			rs.Pods = append(rs.Pods, p.rules)
		}
	}
	if len(c.pods) > len(keys) {
		for k := range c.pods {
			if _, found := slices.BinarySearchFunc(keys, k, compareKeys); !found {
				delete(c.pods, k)
			}
		}
	}
	clear(c.stale)
	rs.index()
	return rs, nil
}

// compilePod compiles one local pod's rules.
func compilePod(k types.NamespacedName, pr policylib.PodRules) *compiledPod {
	p := &compiledPod{rules: PodRuleset{Pod: k}}
	p.isolating[policylib.Ingress] = slices.Clone(pr.Ingress.Policies)
	p.isolating[policylib.Egress] = slices.Clone(pr.Egress.Policies)
	if len(pr.Addrs) == 0 {
		return p
	}
	addrs := make([]netip.Addr, len(pr.Addrs))
	for i, a := range pr.Addrs {
		addrs[i] = a.Unmap()
	}
	slices.SortFunc(addrs, netip.Addr.Compare) // IPv4 sorts first
	p.rules.Addrs = slices.Compact(addrs)
	p.rules.Ingress = compileDirection(pr.Ingress)
	p.rules.Egress = compileDirection(pr.Egress)
	return p
}

// index fills byAddr and Conflicts.
func (rs *Ruleset) index() {
	claims := map[netip.Addr][]int{}
	for i := range rs.Pods {
		p := &rs.Pods[i]
		if p.Ingress == nil && p.Egress == nil {
			continue
		}
		for _, a := range p.Addrs {
			if _, taken := rs.byAddr[a]; !taken {
				rs.byAddr[a] = i
			}
			claims[a] = append(claims[a], i)
		}
	}
	for a, idx := range claims {
		if len(idx) < 2 {
			continue
		}
		c := AddrConflict{Addr: a}
		for _, i := range idx {
			c.Pods = append(c.Pods, rs.Pods[i].Pod)
		}
		rs.Conflicts = append(rs.Conflicts, c)
	}
	slices.SortFunc(rs.Conflicts, func(a, b AddrConflict) int { return a.Addr.Compare(b.Addr) })
}

// dispatched reports whether address a of pod i is the key of its chains
// (false for an address lost to a conflict).
func (rs *Ruleset) dispatched(i int, a netip.Addr) bool {
	j, ok := rs.byAddr[a]
	return ok && j == i
}

func compareKeys(a, b types.NamespacedName) int {
	return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
}

// everyAddr is every IPv4 and IPv6 address (IPv6 less the IPv4-mapped block,
// which addrset treats as IPv4).
var everyAddr = addrset.Of(netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"))

// compileDirection turns policylib's allows into disjoint any-port peers and
// per-port peers. It returns nil for a direction that allows everything.
func compileDirection(d policylib.DirectionRules) *Rules {
	if !d.Isolated {
		return nil
	}
	r := &Rules{Policies: slices.Clone(d.Policies)}
	type portAllow struct {
		proto  policylib.Protocol
		lo, hi int32
		peers  addrset.Set
	}
	var ports []portAllow
	for _, a := range d.Allows {
		peers := a.Peers
		if a.AnyPeer {
			peers = everyAddr
		}
		if a.AnyPort {
			r.Any = r.Any.Union(peers)
			continue
		}
		for _, pr := range a.Ports {
			if !pr.Protocol.HasPorts() {
				continue // never produced by policylib; ICMP needs AnyPort
			}
			ports = append(ports, portAllow{pr.Protocol, max(pr.First, 1), min(pr.Last, 65535), peers})
		}
	}
	if r.Any.ContainsSet(everyAddr) {
		return nil
	}
	// Cut each protocol's port space at every range boundary; each piece
	// allows the union of the peers of the ranges covering it, less those
	// allowed on any port. Neighbouring pieces with equal peers merge back.
	for _, proto := range []policylib.Protocol{policylib.TCP, policylib.UDP, policylib.SCTP} {
		var cuts []int32
		for _, p := range ports {
			if p.proto == proto && p.lo <= p.hi {
				cuts = append(cuts, p.lo, p.hi+1)
			}
		}
		slices.Sort(cuts)
		cuts = slices.Compact(cuts)
		for i := 0; i+1 < len(cuts); i++ {
			lo, hi := cuts[i], cuts[i+1]-1
			var peers addrset.Set
			for _, p := range ports {
				if p.proto == proto && p.lo <= lo && hi <= p.hi {
					peers = peers.Union(p.peers)
				}
			}
			peers = peers.Difference(r.Any)
			if peers.IsEmpty() {
				continue
			}
			if n := len(r.Ports); n > 0 {
				last := &r.Ports[n-1]
				if last.Protocol == proto && int32(last.Last)+1 == lo && last.Peers.Equal(peers) {
					last.Last = uint16(hi)
					continue
				}
			}
			r.Ports = append(r.Ports, PortRule{Protocol: proto, First: uint16(lo), Last: uint16(hi), Peers: peers})
		}
	}
	return r
}

// ---- names ----

// Names of the objects in the table. Per-pod names contain '/', which pod
// and namespace names cannot, so they never collide with these.
const (
	chainForward = "forward"
	chainInput   = "input"
	chainOutput  = "output"
)

// mapName is the verdict map dispatching a direction and family.
func mapName(dir policylib.Direction, v6 bool) string {
	return dirWord(dir) + famSuffix(v6)
}

func dirWord(dir policylib.Direction) string {
	if dir == policylib.Egress {
		return "egress"
	}
	return "ingress"
}

func famSuffix(v6 bool) string {
	if v6 {
		return "6"
	}
	return "4"
}

// A pod direction's chain name is the prefix of the names of its sets, map
// and port chains; the longest suffix (a port chain's peer set) is what a
// chain name must leave room for.
const longestSetSuffix = len("/sctp/65534-65535/peers6")

// chainName is "ingress/NAMESPACE/POD" or "egress/NAMESPACE/POD". A name
// too long for the kernel keeps a prefix of the pod name and ends with a
// hash of the whole key, so it stays unique and stable.
func chainName(dir policylib.Direction, pod types.NamespacedName) string {
	name := dirWord(dir) + "/" + pod.Namespace + "/" + pod.Name
	if len(name)+longestSetSuffix <= maxNameLen {
		return name
	}
	sum := sha256.Sum256([]byte(pod.Namespace + "/" + pod.Name))
	tag := "." + hex.EncodeToString(sum[:6])
	return name[:maxNameLen-longestSetSuffix-len(tag)] + tag
}

// anySetName is a pod direction's set of the peers allowed on any port.
func anySetName(chain string, v6 bool) string { return chain + "/any" + famSuffix(v6) }

// portMapName is a pod direction's map from protocol and port to the chain
// of that port range.
func portMapName(chain string) string { return chain + "/ports" }

// portChainName is the chain of one protocol and port range of a pod
// direction, as "CHAIN/tcp/80" or "CHAIN/tcp/9000-9100".
func portChainName(chain string, p *PortRule) string {
	b := make([]byte, 0, len(chain)+16)
	b = append(b, chain...)
	b = append(b, '/')
	b = append(b, protoName(p.Protocol)...)
	b = append(b, '/')
	b = strconv.AppendUint(b, uint64(p.First), 10)
	if p.Last != p.First {
		b = append(b, '-')
		b = strconv.AppendUint(b, uint64(p.Last), 10)
	}
	return string(b)
}

// peersSetName is the set of the peers allowed on a port chain's range.
func peersSetName(portChain string, v6 bool) string { return portChain + "/peers" + famSuffix(v6) }

// families returns which address families a pod has.
func (p *PodRuleset) families() (v4, v6 bool) {
	for _, a := range p.Addrs {
		if a.Is4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	return
}

// rules returns the pod's rules of a direction.
func (p *PodRuleset) rules(dir policylib.Direction) *Rules {
	if dir == policylib.Egress {
		return p.Egress
	}
	return p.Ingress
}

var directions = [2]policylib.Direction{policylib.Ingress, policylib.Egress}

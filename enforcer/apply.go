package enforcer

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podwall/podwall/policylib"
	"github.com/podwall/podwall/policylib/addrset"
)

// Applier installs Rulesets into the kernel and keeps them in sync. Every
// Apply is one nftables transaction (one netlink batch): the kernel holds
// either the previous ruleset or the new one, never a mix and never
// nothing.
//
// The first Apply of an Applier replaces the table whole, in one batch that
// creates the table if missing, deletes it and declares it again, so an
// agent restarting over a table a previous run left adopts it with no
// window of wrong verdicts. Later Applies diff against the last ruleset
// applied and send only what changed: verdict-map entries of pods that
// came, went or changed address, the chains and sets of directions that
// became or stopped being isolated and of port ranges that came or went,
// and the set elements that differ. A
// change that alters a chain's shape (a pod gaining an address family) or
// the table's options, an incremental batch the kernel refuses, and any
// Apply after a failed one fall back to replacing the table whole.
//
// The cost of an incremental Apply follows the size of the change: pods
// whose rules are unchanged are skipped after a comparison, and the batch
// holds only the elements that differ, in sets whose kernel updates cost
// about the same whatever their size (hash and rbtree sets; the pipapo
// port maps hold one element per port range, not per peer).
//
// After a successful Apply, unless WithConntrackCleanup(false), the
// Applier deletes the conntrack entries of flows the new ruleset denies,
// so established connections a change denies stop as well. It looks only
// at the flows the change can have denied: when a pod's rules for a
// direction now deny something they allowed, the flows in that direction
// with the few peers it lost (a peer pod gone elsewhere), or else all the
// pod's flows in that direction; and the flows of addresses a change of
// dispatch hands to other rules. A handful of such selections are asked
// of the kernel one by one with its conntrack dump filter, so only the
// entries they select are read; more are served by one dump of the
// table. A change that only allows more, such as a peer pod coming up
// elsewhere, needs no conntrack dump.
//
// An Applier is safe for concurrent use; Applies are serialised.
type Applier struct {
	mu        sync.Mutex
	netns     int
	conntrack bool
	last      *Ruleset // what the kernel holds; nil when unknown
	buf, rx   []byte   // the storage of the last batch and its answer, for the next
	ct        ctDumper
}

// Option configures an Applier.
type Option func(*Applier)

// WithNetNS makes the Applier work in the network namespace the file
// descriptor refers to (as from opening /run/netns/NAME) instead of the
// caller's. The Applier does not close it.
func WithNetNS(fd int) Option { return func(a *Applier) { a.netns = fd } }

// WithConntrackCleanup sets whether Apply deletes the conntrack entries of
// flows a change denies (default true).
func WithConntrackCleanup(on bool) Option { return func(a *Applier) { a.conntrack = on } }

// NewApplier returns an Applier that has applied nothing yet, so its first
// Apply replaces the table whole.
func NewApplier(opts ...Option) *Applier {
	a := &Applier{conntrack: true}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Stats describe one Apply.
type Stats struct {
	// Full is true when the table was replaced whole rather than updated.
	Full bool
	// Messages is the number of netlink messages in the batch.
	Messages int
	// PodsChanged counts local pods whose rules or addresses changed, or
	// that came or went (every pod with rules on a full replace).
	PodsChanged int
	// ChainsAdded and ChainsDeleted count per-pod chains.
	ChainsAdded, ChainsDeleted int
	// ElementsAdded and ElementsDeleted count set and map elements.
	ElementsAdded, ElementsDeleted int
	// ConntrackDeleted counts the conntrack entries deleted because the new
	// ruleset denies their flow.
	ConntrackDeleted int
	// ConntrackDumps counts the conntrack dumps cleanup asked the kernel
	// for (each walks the kernel's whole table), ConntrackRead the entries
	// they returned.
	ConntrackDumps, ConntrackRead int
	// Batch is how long sending the batch and reading the kernel's answer
	// took; Conntrack how long the conntrack cleanup took.
	Batch, Conntrack time.Duration
}

// Apply makes the kernel hold rs, in one transaction, and then cuts the
// conntrack entries of flows rs newly denies. On error the kernel still
// holds what it held before when the batch failed (the error wraps the
// kernel's), and the next Apply replaces the table whole; a conntrack
// failure is returned after the ruleset was applied.
func (a *Applier) Apply(ctx context.Context, rs *Ruleset) (Stats, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return Stats{}, err
	}
	if rs == nil {
		return Stats{}, errors.New("enforcer: Apply of a nil Ruleset")
	}
	prev := a.last
	full := prev == nil || prev.Table != rs.Table || prev.AllowHostToLocalPods != rs.AllowHostToLocalPods || !sameShape(prev, rs)
	var st Stats
	var cut map[ctKey]bool
	var incErr, err error
	if !full {
		b := a.newBuilder(rs.Table)
		cut = b.incremental(prev, rs)
		st, incErr = a.flush(b)
		full = incErr != nil // refused: replace the table whole instead
	}
	if full {
		stale := ""
		if prev != nil && prev.Table != rs.Table {
			stale = prev.Table
		}
		b := a.newBuilder(rs.Table)
		b.full(rs, stale)
		st, err = a.flush(b)
		st.Full = true
		cut = allKeys(rs)
	}
	if err != nil {
		a.last = nil // unknown: the next Apply replaces the table whole
		if incErr != nil {
			err = fmt.Errorf("%w (after the incremental update failed: %w)", err, incErr)
		}
		return st, fmt.Errorf("enforcer: apply table inet %s: %w", rs.Table, err)
	}
	a.last = rs
	if a.conntrack {
		start := time.Now()
		err := a.ct.cut(ctx, a.netns, cut, rs, &st)
		st.Conntrack = time.Since(start)
		if err != nil {
			return st, fmt.Errorf("enforcer: conntrack cleanup: %w", err)
		}
	}
	return st, nil
}

// Delete removes the table last applied (DefaultTable when none was), if it
// exists, in one transaction, and forgets what was applied.
func (a *Applier) Delete() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	table := DefaultTable
	if a.last != nil {
		table = a.last.Table
	}
	return a.deleteTable(table)
}

// DeleteTable is Delete for a named table, such as one a previous run with
// other options left.
func (a *Applier) DeleteTable(name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.deleteTable(name)
}

func (a *Applier) deleteTable(name string) error {
	b := newBuilder(name, nil)
	b.addTable(name) // so that deleting never fails for a missing table
	b.delTable(name)
	if err := b.send(a.netns); err != nil {
		return fmt.Errorf("enforcer: delete table inet %s: %w", name, err)
	}
	if a.last != nil && a.last.Table == name {
		a.last = nil
	}
	return nil
}

// Forget makes the next Apply replace the table whole, as after a restart;
// for periodic resyncs that repair a table someone else changed.
func (a *Applier) Forget() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.last = nil
}

// flush sends a built batch, unless it is empty.
func (a *Applier) flush(b *builder) (Stats, error) {
	st := b.st
	if b.err != nil {
		return st, b.err
	}
	st.Messages = len(b.msgs)
	st.ElementsAdded, st.ElementsDeleted = b.added, b.deleted
	if st.Messages == 0 {
		return st, nil
	}
	start := time.Now()
	err := b.send(a.netns)
	st.Batch = time.Since(start)
	if cap(b.buf.b) <= maxKeptBuffer {
		a.buf = b.buf.b[:0]
	}
	a.rx = b.rx
	return st, err
}

// newBuilder starts a batch in the storage of the last one.
func (a *Applier) newBuilder(table string) *builder {
	b := newBuilder(table, a.buf)
	b.rx = a.rx
	return b
}

// maxKeptBuffer bounds the batch storage an Applier keeps between Applies;
// a full replace of a node's table takes a few MiB.
const maxKeptBuffer = 64 << 20

func forceBuffers(nc *netlink.Conn, snd, rcv int) error {
	raw, err := nc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		serr = errors.Join(
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, snd),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcv),
		)
	})
	return errors.Join(err, serr)
}

// sameShape reports whether every chain both rulesets have has the same
// rules (the same address families), so only elements and port ranges
// differ.
func sameShape(a, b *Ruleset) bool {
	old := podIndex(a)
	for i := range b.Pods {
		p := &b.Pods[i]
		o, ok := old[p.Pod]
		if !ok {
			continue
		}
		v4, v6 := p.families()
		o4, o6 := o.families()
		if (v4 != o4 || v6 != o6) && (p.Ingress != nil && o.Ingress != nil || p.Egress != nil && o.Egress != nil) {
			return false
		}
	}
	return true
}

func podIndex(rs *Ruleset) map[types.NamespacedName]*PodRuleset {
	m := make(map[types.NamespacedName]*PodRuleset, len(rs.Pods))
	for i := range rs.Pods {
		m[rs.Pods[i].Pod] = &rs.Pods[i]
	}
	return m
}

// allKeys selects the flows of the local pods with rules, both ways.
func allKeys(rs *Ruleset) map[ctKey]bool {
	out := map[ctKey]bool{}
	for i := range rs.Pods {
		p := &rs.Pods[i]
		if p.Ingress == nil && p.Egress == nil {
			continue
		}
		for _, a := range p.Addrs {
			out[ctKey{addr: a}] = true
			out[ctKey{addr: a, reply: true}] = true
		}
	}
	return out
}

// cutKeys selects the flows a pod direction's rules going from o to n (n
// does not cover o) can have denied: those with the peers n lost when
// they are a few single addresses, else all the pod's flows in that
// direction.
func cutKeys(keys map[ctKey]bool, p *PodRuleset, dir policylib.Direction, o, n *Rules) {
	toPod := dir == policylib.Ingress // ingress judges flows to the pod
	if o != nil {
		if lost, ok := fewAddrs(lostPeers(o, n), maxFilteredDumps); ok {
			for _, a := range lost {
				keys[ctKey{addr: a, reply: !toPod}] = true
			}
			return
		}
	}
	for _, a := range p.Addrs {
		keys[ctKey{addr: a, reply: toPod}] = true
	}
}

// lostPeers returns the peers with which o permits some flow that n does
// not, or more: a peer n permits on part of a port range of o only counts
// as lost.
func lostPeers(o, n *Rules) addrset.Set {
	lost := o.Any.Difference(n.Any)
	for i := range o.Ports {
		op := &o.Ports[i]
		rest := op.Peers.Difference(n.Any)
		if rest.IsEmpty() {
			continue
		}
		// The peers every range of n over op's range permits; none where
		// n leaves part of it uncovered.
		var kept addrset.Set
		next, first := int(op.First), true
		for j := range n.Ports {
			np := &n.Ports[j]
			if np.Protocol != op.Protocol || np.Last < op.First || np.First > op.Last {
				continue
			}
			if int(np.First) > next {
				break
			}
			if first {
				kept, first = np.Peers, false
			} else {
				kept = kept.Intersect(np.Peers)
			}
			next = int(np.Last) + 1
		}
		if next > int(op.Last) {
			rest = rest.Difference(kept)
		}
		lost = lost.Union(rest)
	}
	return lost
}

// fewAddrs lists the addresses of s when it holds at most max single
// addresses.
func fewAddrs(s addrset.Set, max int) ([]netip.Addr, bool) {
	rs := s.Ranges()
	if len(rs) > max {
		return nil, false
	}
	out := make([]netip.Addr, 0, len(rs))
	for _, r := range rs {
		if r.From != r.To {
			return nil, false
		}
		out = append(out, r.From)
	}
	return out, true
}

// covers reports whether n permits every flow o permits (nil permits
// everything).
func covers(n, o *Rules) bool {
	if n == nil {
		return true
	}
	if o == nil || !n.Any.ContainsSet(o.Any) {
		return false
	}
	for i := range o.Ports {
		op := &o.Ports[i]
		rest := op.Peers.Difference(n.Any)
		if rest.IsEmpty() {
			continue
		}
		// Every port of op's range needs a range of n that allows rest.
		next := int(op.First)
		for j := range n.Ports {
			np := &n.Ports[j]
			if np.Protocol != op.Protocol || np.Last < op.First || np.First > op.Last {
				continue
			}
			if int(np.First) > next || !np.Peers.ContainsSet(rest) {
				return false
			}
			next = int(np.Last) + 1
		}
		if next <= int(op.Last) {
			return false
		}
	}
	return true
}

// ---- batches ----

// builder fills one batch.
type builder struct {
	nlBatch
	st     Stats
	err    error             // the first error building the batch
	setIDs map[string]uint32 // sets created in this batch
}

func newBuilder(table string, buf []byte) *builder {
	return &builder{nlBatch: newNLBatch(table, buf), setIDs: map[string]uint32{}}
}

func (b *builder) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

func (b *builder) newSet(name string, kind setKind) {
	b.setIDs[name] = b.addSet(name, kind)
}

func (b *builder) rules(chain string, rs []rule) {
	for _, r := range rs {
		if err := b.addRule(chain, r.exprs(b.setIDs[r.set])); err != nil {
			b.fail(err)
		}
	}
}

// rangeElems adds or deletes the elements of address ranges of one family.
func (b *builder) rangeElems(op elemOp, set string, rs []addrset.Range) {
	for _, r := range rs {
		b.elem(op, set, elem{key: r.From.AsSlice()})
		if next := r.To.Next(); next.IsValid() {
			b.elem(op, set, elem{key: next.AsSlice(), end: true})
		}
	}
}

// addrSets creates one interval set per family of the pod, holding the
// ranges of s.
func (b *builder) addrSets(name func(v6 bool) string, s addrset.Set, v4, v6 bool) {
	r4, r6 := splitFamilies(s)
	if v4 {
		b.newSet(name(false), setAddr4)
		b.rangeElems(opAdd, name(false), r4)
	}
	if v6 {
		b.newSet(name(true), setAddr6)
		b.rangeElems(opAdd, name(true), r6)
	}
}

// addPortChain creates the chain of a port range of a pod direction with its
// peer sets. The port map's element pointing to it comes after.
func (b *builder) addPortChain(dir policylib.Direction, chain string, p *PortRule, v4, v6 bool) string {
	pc := portChainName(chain, p)
	b.addrSets(func(v6 bool) string { return peersSetName(pc, v6) }, p.Peers, v4, v6)
	b.addChain(pc, nil)
	b.rules(pc, portChainRules(dir, pc, v4, v6))
	return pc
}

// delPortChain deletes the chain of a port range with its peer sets. The
// port map's element pointing to it must be deleted earlier in the batch.
func (b *builder) delPortChain(chain string, p *PortRule, v4, v6 bool) {
	pc := portChainName(chain, p)
	b.delChain(pc)
	for _, fam := range families(v4, v6) {
		b.delSet(peersSetName(pc, fam))
	}
}

// addPodChain creates a pod direction's sets, port chains, port map, chain
// and rules.
func (b *builder) addPodChain(p *PodRuleset, dir policylib.Direction) {
	r := p.rules(dir)
	name := chainName(dir, p.Pod)
	v4, v6 := p.families()
	b.addrSets(func(v6 bool) string { return anySetName(name, v6) }, r.Any, v4, v6)
	chains := make([]string, len(r.Ports))
	for i := range r.Ports {
		chains[i] = b.addPortChain(dir, name, &r.Ports[i], v4, v6)
	}
	pm := portMapName(name)
	b.newSet(pm, setPortVmap)
	for i := range r.Ports {
		b.elem(opAdd, pm, portMapElem(&r.Ports[i], chains[i]))
	}
	b.addChain(name, nil)
	b.rules(name, podChainRules(dir, name, v4, v6))
	b.st.ChainsAdded++
}

// delPodChain deletes a pod direction's chain (with its rules), port map,
// port chains and sets. The dispatch-map entries that jump to it must be
// deleted earlier in the batch.
func (b *builder) delPodChain(p *PodRuleset, dir policylib.Direction) {
	r := p.rules(dir)
	name := chainName(dir, p.Pod)
	v4, v6 := p.families()
	b.delChain(name)
	b.delSet(portMapName(name))
	for i := range r.Ports {
		b.delPortChain(name, &r.Ports[i], v4, v6)
	}
	for _, fam := range families(v4, v6) {
		b.delSet(anySetName(name, fam))
	}
	b.st.ChainsDeleted++
}

// updatePodChain turns a pod direction's chain from old's rules into new's,
// which differ; the pod's address families are the same.
func (b *builder) updatePodChain(p *PodRuleset, dir policylib.Direction, old, new *Rules) {
	name := chainName(dir, p.Pod)
	v4, v6 := p.families()
	for _, fam := range families(v4, v6) {
		b.diffSet(anySetName(name, fam), old.Any, new.Any, fam)
	}
	// Port ranges: both lists are sorted; a range in both keeps its chain
	// and has its peers diffed, one in old only loses its chain, one in new
	// only gains one.
	pm := portMapName(name)
	var gone, kept, come []int // indexes in old, old, new
	var keptNew []int
	i, j := 0, 0
	for i < len(old.Ports) || j < len(new.Ports) {
		switch {
		case j == len(new.Ports) || i < len(old.Ports) && comparePorts(&old.Ports[i], &new.Ports[j]) < 0:
			gone = append(gone, i)
			i++
		case i == len(old.Ports) || comparePorts(&old.Ports[i], &new.Ports[j]) > 0:
			come = append(come, j)
			j++
		case samePorts(&old.Ports[i], &new.Ports[j]):
			kept, keptNew = append(kept, i), append(keptNew, j)
			i++
			j++
		default: // same start, other end
			gone, come = append(gone, i), append(come, j)
			i++
			j++
		}
	}
	for _, i := range gone {
		b.elem(opDel, pm, portMapElem(&old.Ports[i], portChainName(name, &old.Ports[i])))
	}
	for _, i := range gone {
		b.delPortChain(name, &old.Ports[i], v4, v6)
	}
	for k, i := range kept {
		op, np := &old.Ports[i], &new.Ports[keptNew[k]]
		if op.Peers.Equal(np.Peers) {
			continue
		}
		pc := portChainName(name, np)
		for _, fam := range families(v4, v6) {
			b.diffSet(peersSetName(pc, fam), op.Peers, np.Peers, fam)
		}
	}
	chains := make([]string, len(come))
	for k, j := range come {
		chains[k] = b.addPortChain(dir, name, &new.Ports[j], v4, v6)
	}
	for k, j := range come {
		b.elem(opAdd, pm, portMapElem(&new.Ports[j], chains[k]))
	}
}

// diffSet deletes the ranges of one family of an address set that
// changed, then adds their new form.
func (b *builder) diffSet(set string, old, new addrset.Set, v6 bool) {
	if v6 {
		old, new = old.IPv6(), new.IPv6()
	} else {
		old, new = old.IPv4(), new.IPv4()
	}
	if old.Equal(new) {
		return
	}
	del, add := diffRanges(old.Ranges(), new.Ranges())
	b.rangeElems(opDel, set, del)
	b.rangeElems(opAdd, set, add)
}

var hooks = map[string]baseHook{
	chainForward: {hook: unix.NF_INET_FORWARD},
	chainInput:   {hook: unix.NF_INET_LOCAL_IN},
	chainOutput:  {hook: unix.NF_INET_LOCAL_OUT},
}

// full fills a batch that replaces the table whole, and deletes the table
// stale (the one a previous ruleset used) unless it is "".
func (b *builder) full(rs *Ruleset, stale string) {
	if stale != "" {
		b.addTable(stale)
		b.delTable(stale)
	}
	b.addTable(rs.Table) // a no-op when it exists, so the delete cannot fail
	b.delTable(rs.Table)
	b.addTable(rs.Table)
	for i := range rs.Pods {
		p := &rs.Pods[i]
		if p.Ingress != nil || p.Egress != nil {
			b.st.PodsChanged++
		}
		for _, dir := range directions {
			if p.rules(dir) != nil {
				b.addPodChain(p, dir)
			}
		}
	}
	for _, dir := range directions {
		for _, fam := range []bool{false, true} {
			m := mapName(dir, fam)
			b.newSet(m, dispatchMap(fam))
			for _, e := range mapEntries(rs, dir, fam) {
				b.elem(opAdd, m, dispatchElem(e))
			}
		}
	}
	for _, bc := range baseChains(rs.AllowHostToLocalPods) {
		h := hooks[bc.name]
		b.addChain(bc.name, &h)
		b.rules(bc.name, bc.rules)
	}
}

func dispatchMap(v6 bool) setKind {
	if v6 {
		return setVmap6
	}
	return setVmap4
}

func dispatchElem(e mapEntry) elem {
	return elem{key: e.addr.AsSlice(), chain: e.chain}
}

// incremental fills a batch that turns prev into rs, which must have the
// same table options and chain shapes (sameShape). It returns what
// conntrack cleanup must check: the flows of pod directions whose rules
// now deny something they allowed (see cutKeys), and the flows of
// addresses the dispatch maps now send to another chain.
func (b *builder) incremental(prev, rs *Ruleset) map[ctKey]bool {
	old := podIndex(prev)
	cut := map[ctKey]bool{}

	// 1. Dispatch entries that go or change, before their chains go.
	type mapAdd struct {
		set string
		es  []mapEntry
	}
	var adds []mapAdd
	for _, dir := range directions {
		for _, fam := range []bool{false, true} {
			m := mapName(dir, fam)
			was := map[netip.Addr]string{}
			for _, e := range mapEntries(prev, dir, fam) {
				was[e.addr] = e.chain
			}
			var add []mapEntry
			for _, e := range mapEntries(rs, dir, fam) {
				if c, ok := was[e.addr]; ok && c == e.chain {
					delete(was, e.addr)
					continue
				}
				add = append(add, e)
				cut[ctKey{addr: e.addr, reply: dir == policylib.Ingress}] = true
			}
			for a, c := range was {
				b.elem(opDel, m, dispatchElem(mapEntry{a, c}))
			}
			adds = append(adds, mapAdd{m, add})
		}
	}
	// 2. Chains of directions no longer isolated, or of pods gone.
	cur := podIndex(rs)
	for i := range prev.Pods {
		o := &prev.Pods[i]
		p := cur[o.Pod]
		if p == nil && (o.Ingress != nil || o.Egress != nil) {
			b.st.PodsChanged++
		}
		for _, dir := range directions {
			if o.rules(dir) != nil && (p == nil || p.rules(dir) == nil) {
				b.delPodChain(o, dir)
			}
		}
	}
	// 3. New chains, and the changes of the chains that stay.
	for i := range rs.Pods {
		p := &rs.Pods[i]
		o := old[p.Pod]
		changed := false
		for _, dir := range directions {
			r := p.rules(dir)
			var or *Rules
			if o != nil {
				or = o.rules(dir)
			}
			switch {
			case r == nil:
				changed = changed || or != nil
			case or == nil:
				b.addPodChain(p, dir)
				changed = true
				cutKeys(cut, p, dir, nil, r)
			case !or.Equal(r):
				b.updatePodChain(p, dir, or, r)
				changed = true
				if !covers(r, or) {
					cutKeys(cut, p, dir, or, r)
				}
			}
		}
		if changed || o != nil && !slices.Equal(o.Addrs, p.Addrs) {
			b.st.PodsChanged++
		}
	}
	// 4. Dispatch entries that come, once their chains exist.
	for _, m := range adds {
		for _, e := range m.es {
			b.elem(opAdd, m.set, dispatchElem(e))
		}
	}
	return cut
}

// families lists the address families present, IPv4 (false) first.
func families(v4, v6 bool) []bool {
	switch {
	case v4 && v6:
		return bothFamilies[:]
	case v6:
		return bothFamilies[1:]
	case v4:
		return bothFamilies[:1]
	}
	return nil
}

var bothFamilies = [2]bool{false, true}

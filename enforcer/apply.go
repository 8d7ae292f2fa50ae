package enforcer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podwall/podwall/policylib"
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
// became or stopped being isolated, and the set elements that differ. A
// change that alters a chain's shape (a pod gaining an address family) or
// the table's options, an incremental batch the kernel refuses, and any
// Apply after a failed one fall back to replacing the table whole.
//
// After a successful Apply, unless WithConntrackCleanup(false), the
// Applier deletes the conntrack entries of flows the new ruleset denies,
// among those touching a pod whose rules changed, so established
// connections a change denies stop as well.
//
// An Applier is safe for concurrent use; Applies are serialised.
type Applier struct {
	mu        sync.Mutex
	netns     int
	conntrack bool
	last      *Ruleset // what the kernel holds; nil when unknown
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
	// Batch is how long the kernel took to take the batch; Conntrack how
	// long the conntrack cleanup took.
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
	var incErr, err error
	if !full {
		st, incErr = a.flush(func(b *batch) { b.incremental(prev, rs) })
		full = incErr != nil // refused: replace the table whole instead
	}
	if full {
		stale := ""
		if prev != nil && prev.Table != rs.Table {
			stale = prev.Table
		}
		st, err = a.flush(func(b *batch) { b.full(rs, stale) })
		st.Full = true
		prev = nil // every pod counts as changed
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
		n, err := cutConntrack(ctx, a.netns, changedAddrs(prev, rs), rs)
		st.ConntrackDeleted, st.Conntrack = n, time.Since(start)
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
	c, err := a.conn(nil)
	if err != nil {
		return err
	}
	t := &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
	c.AddTable(t) // so that deleting never fails for a missing table
	c.DelTable(t)
	if err := c.Flush(); err != nil {
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

// flush builds a batch with fill and sends it, unless it is empty.
func (a *Applier) flush(fill func(*batch)) (Stats, error) {
	b := &batch{}
	c, err := a.conn(&b.st.Messages)
	if err != nil {
		return Stats{}, err
	}
	b.c = c
	fill(b)
	if b.err != nil {
		return Stats{}, b.err
	}
	if b.st.Messages == 0 {
		return b.st, nil
	}
	start := time.Now()
	err = c.Flush()
	b.st.Batch = time.Since(start)
	return b.st, err
}

// Socket buffer limits for a batch. The batch is sent in one sendmsg, which
// the send buffer must hold, and the kernel answers every message (and
// echoes every rule) before we read, so the receive buffer must hold all
// answers or the kernel reports ENOBUFS after committing. They are limits,
// not allocations; forcing them needs CAP_NET_ADMIN, which nftables needs
// anyway.
const (
	minSocketBuffer = 4 << 20
	bytesPerMessage = 2048 // an ack or a rule echo, with the kernel's overhead
)

func (a *Applier) conn(messages *int) (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.WithSockOptions(func(nc *netlink.Conn) error {
		size := minSocketBuffer
		if messages != nil {
			size = max(size, *messages*bytesPerMessage)
		}
		return forceBuffers(nc, size)
	})}
	if a.netns != 0 {
		opts = append(opts, nftables.WithNetNSFd(a.netns))
	}
	return nftables.New(opts...)
}

func forceBuffers(nc *netlink.Conn, size int) error {
	raw, err := nc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		serr = errors.Join(
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size),
		)
	})
	return errors.Join(err, serr)
}

// sameShape reports whether every chain both rulesets have has the same
// rules (the same address families), so only elements differ.
func sameShape(a, b *Ruleset) bool {
	old := map[types.NamespacedName]*PodRuleset{}
	for i := range a.Pods {
		old[a.Pods[i].Pod] = &a.Pods[i]
	}
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

// changedAddrs returns the addresses of local pods whose rules changed from
// prev to rs (every pod with rules when prev is nil).
func changedAddrs(prev, rs *Ruleset) map[[16]byte]bool {
	out := map[[16]byte]bool{}
	var old map[types.NamespacedName]*PodRuleset
	if prev != nil {
		old = map[types.NamespacedName]*PodRuleset{}
		for i := range prev.Pods {
			old[prev.Pods[i].Pod] = &prev.Pods[i]
		}
	}
	for i := range rs.Pods {
		p := &rs.Pods[i]
		if p.Ingress == nil && p.Egress == nil {
			continue
		}
		if o, ok := old[p.Pod]; ok && o.Ingress.Equal(p.Ingress) && o.Egress.Equal(p.Egress) {
			continue
		}
		for _, a := range p.Addrs {
			out[a.As16()] = true
		}
	}
	return out
}

// ---- batches ----

type batch struct {
	c      *nftables.Conn
	err    error // the first error building the batch
	st     Stats
	table  *nftables.Table
	nextID uint32
}

// elemChunk bounds the elements of one message: the element list is one
// netlink attribute, whose length field has 16 bits.
const elemChunk = 512

func (b *batch) setID() uint32 {
	b.nextID++
	return b.nextID
}

func (b *batch) msg(n int) { b.st.Messages += n }

func (b *batch) newSet(s *nftables.Set, elems []elem) {
	s.Table, s.ID = b.table, b.setID()
	if err := b.c.AddSet(s, nil); err != nil {
		b.fail(err)
	}
	b.msg(1)
	b.addElems(s, elems)
}

// fail records the first error building the batch.
func (b *batch) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

func (b *batch) addElems(s *nftables.Set, elems []elem) {
	for len(elems) > 0 {
		n := min(len(elems), elemChunk)
		ses := make([]nftables.SetElement, n)
		for i, e := range elems[:n] {
			ses[i] = e.nft()
		}
		if err := b.c.SetAddElements(s, ses); err != nil {
			b.fail(err)
		}
		b.msg(1)
		b.st.ElementsAdded += n
		elems = elems[n:]
	}
}

func (b *batch) delElems(s *nftables.Set, elems []elem) {
	for len(elems) > 0 {
		n := min(len(elems), elemChunk)
		ses := make([]nftables.SetElement, n)
		for i, e := range elems[:n] {
			ses[i] = e.nft()
		}
		if err := b.c.SetDeleteElements(s, ses); err != nil {
			b.fail(err)
		}
		b.msg(1)
		b.st.ElementsDeleted += n
		elems = elems[n:]
	}
}

func (b *batch) setRef(name string) *nftables.Set {
	return &nftables.Set{Table: b.table, Name: name}
}

var (
	ipv4Ports = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	ipv6Ports = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)
)

func addrSetType(v6 bool) nftables.SetDatatype {
	if v6 {
		return nftables.TypeIP6Addr
	}
	return nftables.TypeIPAddr
}

// addPodChain creates a pod direction's sets, chain and rules.
func (b *batch) addPodChain(p *PodRuleset, dir policylib.Direction) {
	rules := p.rules(dir)
	name := chainName(dir, p.Pod)
	v4, v6 := p.families()
	ids := map[string]uint32{}
	for _, fam := range []bool{false, true} {
		if fam && !v6 || !fam && !v4 {
			continue
		}
		anySet := &nftables.Set{Name: anySetName(name, fam), KeyType: addrSetType(fam), Interval: true}
		b.newSet(anySet, anyElems(rules.Any, fam))
		ids[anySet.Name] = anySet.ID
		ports := &nftables.Set{Name: portsSetName(name, fam), KeyType: ipv4Ports, Interval: true, Concatenation: true}
		if fam {
			ports.KeyType = ipv6Ports
		}
		b.newSet(ports, portElems(rules, fam))
		ids[ports.Name] = ports.ID
	}
	chain := b.c.AddChain(&nftables.Chain{Name: name, Table: b.table})
	b.msg(1)
	for _, r := range podChainRules(dir, name, v4, v6) {
		b.c.AddRule(&nftables.Rule{Table: b.table, Chain: chain, Exprs: r.exprs(ids[r.set])})
		b.msg(1)
	}
	b.st.ChainsAdded++
}

// delPodChain deletes a pod direction's chain (with its rules) and sets.
// The verdict-map entries that jump to it must be deleted earlier in the
// batch.
func (b *batch) delPodChain(p *PodRuleset, dir policylib.Direction) {
	name := chainName(dir, p.Pod)
	b.c.DelChain(&nftables.Chain{Name: name, Table: b.table})
	b.msg(1)
	v4, v6 := p.families()
	for _, fam := range []bool{false, true} {
		if fam && !v6 || !fam && !v4 {
			continue
		}
		b.c.DelSet(b.setRef(anySetName(name, fam)))
		b.c.DelSet(b.setRef(portsSetName(name, fam)))
		b.msg(2)
	}
	b.st.ChainsDeleted++
}

// full fills a batch that replaces the table whole, and deletes the table
// stale (the one a previous ruleset used) unless it is "".
func (b *batch) full(rs *Ruleset, stale string) {
	if stale != "" {
		t := &nftables.Table{Name: stale, Family: nftables.TableFamilyINet}
		b.c.AddTable(t)
		b.c.DelTable(t)
		b.msg(2)
	}
	b.table = &nftables.Table{Name: rs.Table, Family: nftables.TableFamilyINet}
	b.c.AddTable(b.table) // a no-op when it exists, so the delete cannot fail
	b.c.DelTable(b.table)
	b.c.AddTable(b.table)
	b.msg(3)
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
	ids := map[string]uint32{}
	for _, dir := range directions {
		for _, fam := range []bool{false, true} {
			m := &nftables.Set{Name: mapName(dir, fam), KeyType: addrSetType(fam), IsMap: true, DataType: nftables.TypeVerdict}
			b.newSet(m, mapElems(rs, dir, fam))
			ids[m.Name] = m.ID
		}
	}
	accept := nftables.ChainPolicyAccept
	hooks := map[string]*nftables.ChainHook{
		chainForward: nftables.ChainHookForward,
		chainInput:   nftables.ChainHookInput,
		chainOutput:  nftables.ChainHookOutput,
	}
	for _, bc := range baseChains(rs.AllowHostToLocalPods) {
		chain := b.c.AddChain(&nftables.Chain{
			Name: bc.name, Table: b.table, Type: nftables.ChainTypeFilter,
			Hooknum: hooks[bc.name], Priority: nftables.ChainPriorityFilter, Policy: &accept,
		})
		b.msg(1)
		for _, r := range bc.rules {
			b.c.AddRule(&nftables.Rule{Table: b.table, Chain: chain, Exprs: r.exprs(ids[r.set])})
			b.msg(1)
		}
	}
}

// incremental fills a batch that turns prev into rs, which must have the
// same table options and chain shapes (sameShape).
func (b *batch) incremental(prev, rs *Ruleset) {
	b.table = &nftables.Table{Name: rs.Table, Family: nftables.TableFamilyINet}
	old := map[types.NamespacedName]*PodRuleset{}
	for i := range prev.Pods {
		old[prev.Pods[i].Pod] = &prev.Pods[i]
	}
	cur := map[types.NamespacedName]*PodRuleset{}
	for i := range rs.Pods {
		cur[rs.Pods[i].Pod] = &rs.Pods[i]
	}

	// 1. Verdict-map entries that go or change, before their chains go.
	type mapDiff struct {
		set *nftables.Set
		add []elem
	}
	var maps []mapDiff
	for _, dir := range directions {
		for _, fam := range []bool{false, true} {
			del, add := diffElems(mapElems(prev, dir, fam), mapElems(rs, dir, fam))
			m := b.setRef(mapName(dir, fam))
			b.delElems(m, del)
			maps = append(maps, mapDiff{m, add})
		}
	}
	// 2. Chains of directions no longer isolated (or of pods gone).
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
	// 3. New chains, and element changes of the chains that stay.
	for i := range rs.Pods {
		p := &rs.Pods[i]
		o := old[p.Pod]
		changed := false
		for _, dir := range directions {
			r := p.rules(dir)
			if r == nil {
				if o != nil && o.rules(dir) != nil {
					changed = true
				}
				continue
			}
			if o == nil || o.rules(dir) == nil {
				b.addPodChain(p, dir)
				changed = true
				continue
			}
			or := o.rules(dir)
			if or.Equal(r) {
				continue
			}
			changed = true
			name := chainName(dir, p.Pod)
			v4, v6 := p.families()
			for _, fam := range []bool{false, true} {
				if fam && !v6 || !fam && !v4 {
					continue
				}
				del, add := diffElems(anyElems(or.Any, fam), anyElems(r.Any, fam))
				s := b.setRef(anySetName(name, fam))
				b.delElems(s, del)
				b.addElems(s, add)
				del, add = diffElems(portElems(or, fam), portElems(r, fam))
				s = b.setRef(portsSetName(name, fam))
				b.delElems(s, del)
				b.addElems(s, add)
			}
		}
		if changed || o != nil && !slices.Equal(o.Addrs, p.Addrs) {
			b.st.PodsChanged++
		}
	}
	// 4. Verdict-map entries that come, once their chains exist.
	for _, m := range maps {
		b.addElems(m.set, m.add)
	}
}

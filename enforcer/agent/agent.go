package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podwall/podwall/enforcer"
	"github.com/podwall/podwall/policylib"
)

// Source feeds cluster objects into an agent.
type Source interface {
	// Name identifies the source in logs and metrics ("kubernetes",
	// "manifests").
	Name() string
	// Run feeds the source's objects into sink until ctx is done: first
	// the whole initial state, then Synced, then every change. It returns
	// nil when ctx is done, and an error only when it cannot go on at all.
	Run(ctx context.Context, sink Sink) error
}

// Sink takes a source's changes. The agent gives each source its own.
// Methods are safe for concurrent use; none blocks on a sync.
type Sink interface {
	SetPod(*corev1.Pod)
	DeletePod(namespace, name string)
	SetNamespace(*corev1.Namespace)
	DeleteNamespace(name string)
	SetPolicy(*networkingv1.NetworkPolicy)
	DeletePolicy(namespace, name string)
	SetNode(*corev1.Node)
	DeleteNode(name string)
	// Synced says the source has fed its whole initial state. The agent
	// touches the kernel only once every source has said so.
	Synced()
	// Batch runs fn, which feeds a set of changes that belong together
	// (a reloaded directory), with syncs held off, so the kernel never
	// gets half of them; then the agent syncs without waiting for the
	// debounce period.
	Batch(fn func())
	// Error reports a problem the source could not get past (a manifest
	// that does not load, a failed watch). The agent logs and counts it
	// and keeps what the source fed before.
	Error(err error)
	// Generation is the agent's change counter: it grows with every change
	// fed to the engine that may alter the node's ruleset. After feeding
	// changes, a source (or its caller) can wait with Agent.WaitApplied for
	// the kernel to hold them. A change that cannot alter the ruleset (a
	// pod's status update, a pod elsewhere that no local pod's policies can
	// match, another node) leaves it as it is: the kernel holds it already.
	Generation() uint64
}

// SyncReport describes one sync attempt.
type SyncReport struct {
	// Generation is the agent generation the ruleset was compiled at.
	Generation uint64
	// Full is true when the table was replaced whole (first sync, periodic
	// resync, recovery).
	Full bool
	// Resync is true for a periodic resync.
	Resync bool
	// Ruleset is what was compiled (nil when compiling failed).
	Ruleset *enforcer.Ruleset
	Size    RulesetSize
	// Stats are the Applier's figures.
	Stats enforcer.Stats
	// Recompiled counts the local pods whose rules were compiled afresh
	// from the engine; the others kept the rules compiled before, as no
	// change since could alter them (all of them on a full sync).
	Recompiled int
	// Compile is the time compiling took, Apply the time Apply took
	// (batch and conntrack cleanup).
	Compile, Apply time.Duration
	// Latency is the time from the first change this sync took in to the
	// kernel holding it (zero when no change was pending).
	Latency time.Duration
	// Err is why the sync failed, or nil.
	Err error
}

// Status is a snapshot of the agent's state.
type Status struct {
	// Generation counts the changes fed to the engine; Applied is the
	// generation the kernel holds (0 before the first successful sync).
	Generation, Applied uint64
	// SourcesSynced is true once every source has fed its initial state.
	SourcesSynced bool
	// LocalPods are the local pods the engine knows.
	LocalPods int
	// NodeKnown is true while the sources hold the Node object named
	// Options.NodeName, valid or not.
	NodeKnown bool
	// Rejected are the NetworkPolicies whose latest version policylib
	// rejected, with the reason.
	Rejected map[types.NamespacedName]string
	// LastSync is the last sync attempt, if any.
	LastSync *SyncReport
}

// Agent keeps a node's nftables ruleset in step with what its sources feed.
// Create one with New and start it with Run.
type Agent struct {
	opts    Options
	log     logr.Logger
	eng     *policylib.Engine
	applier Applier
	m       *metrics

	mu         sync.Mutex
	compiler   *enforcer.Compiler // the local pods' rules as last compiled
	local      map[types.NamespacedName]bool
	nodeAddrs  []netip.Addr // of the local Node object
	nodeKnown  bool         // the local Node object has been fed
	rejected   map[types.NamespacedName]string
	standIns   map[types.NamespacedName]*networkingv1.NetworkPolicy // the stand-ins the engine holds for rejected policies (isolateOnly)
	badObjects map[string]map[string]string                         // kind -> name -> reason
	gen        uint64
	applied    uint64
	appliedOK  bool // a sync succeeded at least once
	dirty      bool
	firstDirty time.Time
	lastDirty  time.Time
	lastSync   time.Time // when the last sync ended
	flush      bool
	holds      int             // batches being fed
	forceFull  bool            // Resync asked for a full replace
	sources    map[string]bool // name -> synced
	running    bool
	stopped    bool
	busySince  time.Time
	last       *SyncReport
	appliedCh  chan struct{} // closed and replaced at each successful sync
	kick       chan struct{}
	// onSourceError, set by DryRun, makes source errors fatal.
	onSourceError func(error)
}

// New returns an agent that has applied nothing yet.
func New(opts Options) (*Agent, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	opts = opts.withDefaults()
	a := &Agent{
		opts:       opts,
		log:        opts.Logger,
		eng:        policylib.NewEngine(opts.EngineOptions...),
		applier:    opts.Applier,
		m:          newMetrics(),
		compiler:   enforcer.NewCompiler(),
		local:      map[types.NamespacedName]bool{},
		rejected:   map[types.NamespacedName]string{},
		standIns:   map[types.NamespacedName]*networkingv1.NetworkPolicy{},
		badObjects: map[string]map[string]string{},
		sources:    map[string]bool{},
		appliedCh:  make(chan struct{}),
		kick:       make(chan struct{}, 1),
	}
	if a.applier == nil {
		a.applier = enforcer.NewApplier()
	}
	if err := a.m.register(opts.Registerer); err != nil {
		return nil, fmt.Errorf("agent: registering metrics: %w", err)
	}
	return a, nil
}

// Engine returns the agent's policy engine, for read-only questions
// (Decide, Explain). Feed changes through a Sink, never directly.
func (a *Agent) Engine() *policylib.Engine { return a.eng }

// ---- changes ----

// changed records a change (a.mu held).
func (a *Agent) changed() {
	a.gen++
	now := time.Now()
	if !a.dirty {
		a.dirty = true
		a.firstDirty = now
	}
	a.lastDirty = now
	a.wake()
}

func (a *Agent) wake() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

func podKey(namespace, name string) types.NamespacedName {
	return types.NamespacedName{Namespace: namespace, Name: name}
}

func (a *Agent) setPod(p *corev1.Pod) {
	k := podKey(p.Namespace, p.Name)
	a.mu.Lock()
	defer a.mu.Unlock()
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		// Finished pods take no traffic; the engine drops them.
		a.deletePodLocked(k)
		return
	}
	if a.eng.HoldsPod(p) {
		// A status update: nothing the engine reads changed, the node
		// (so whether the pod is local) included.
		a.accept("Pod", k.String())
		return
	}
	var err error
	n := invalidateDependents(a.compiler, podDependents(a.eng, k), func() bool {
		err = a.eng.SetPod(p)
		return err == nil
	})
	if err != nil {
		// The engine kept what it had (the previous version, or nothing).
		a.reject("Pod", k.String(), err)
		return
	}
	a.accept("Pod", k.String())
	wasLocal, isLocal := a.local[k], p.Spec.NodeName == a.opts.NodeName
	if isLocal {
		a.local[k] = true
	} else {
		delete(a.local, k)
	}
	if n+a.compiler.Invalidate(k) > 0 || wasLocal != isLocal {
		a.changed()
	}
}

func (a *Agent) deletePod(namespace, name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.deletePodLocked(podKey(namespace, name))
}

func (a *Agent) deletePodLocked(k types.NamespacedName) {
	a.accept("Pod", k.String())
	n := invalidateDependents(a.compiler, podDependents(a.eng, k), func() bool {
		a.eng.DeletePod(k.Namespace, k.Name)
		return true
	})
	wasLocal := a.local[k]
	delete(a.local, k)
	if n > 0 || wasLocal {
		a.changed()
	}
}

func (a *Agent) setNamespace(ns *corev1.Namespace) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.eng.HoldsNamespace(ns) {
		// Same labels (an informer's resync, an annotation): no selector
		// sees a difference. The engine still learns the namespace is
		// declared.
		a.eng.SetNamespace(ns)
		return
	}
	if invalidateDependents(a.compiler, namespaceDependents(a.eng, ns.Name), func() bool {
		a.eng.SetNamespace(ns)
		return true
	}) > 0 {
		a.changed()
	}
}

func (a *Agent) deleteNamespace(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	// Its pods are normally gone by then, and a namespace without pods
	// affects no policy.
	if invalidateDependents(a.compiler, namespaceDependents(a.eng, name), func() bool {
		a.eng.DeleteNamespace(name)
		return true
	}) > 0 {
		a.changed()
	}
}

func (a *Agent) setPolicy(np *networkingv1.NetworkPolicy) {
	k := podKey(np.Namespace, np.Name)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.eng.SetPolicy(np); err != nil {
		// SetPolicy changed nothing: a previous valid version, if any,
		// stays in force (as the API server keeps the stored version when
		// it refuses an update). A policy without one must not leave open
		// what it was written to close: it stands in isolating the pods it
		// selects, with nothing allowed.
		msg := oneLine(err.Error())
		if a.rejected[k] != msg {
			a.log.Error(err, "NetworkPolicy rejected: its previous valid version kept, or else its pods isolated with nothing allowed", "policy", k.String())
		}
		a.rejected[k] = msg
		a.m.rejectedPolicies.Set(float64(len(a.rejected)))
		// A stand-in follows the latest version: its selector and
		// directions may have changed too (a resync replaying the same
		// version changes nothing).
		old, standing := a.standIns[k]
		if standing || !a.eng.HasPolicy(np.Namespace, np.Name) {
			si := isolateOnly(np)
			if standing && apiequality.Semantic.DeepEqual(old.Spec, si.Spec) {
				return
			}
			if err := a.eng.SetPolicy(si); err != nil {
				a.log.Error(err, "NetworkPolicy rejected, and its stand-in too", "policy", k.String())
				return
			}
			a.standIns[k] = si
			if a.compiler.InvalidateNamespace(np.Namespace) > 0 {
				a.changed()
			}
		}
		return
	}
	delete(a.standIns, k)
	if _, was := a.rejected[k]; was {
		a.log.Info("NetworkPolicy accepted again", "policy", k.String())
		delete(a.rejected, k)
		a.m.rejectedPolicies.Set(float64(len(a.rejected)))
	}
	// A policy selects pods of its own namespace only.
	if a.compiler.InvalidateNamespace(np.Namespace) > 0 {
		a.changed()
	}
}

func (a *Agent) deletePolicy(namespace, name string) {
	k := podKey(namespace, name)
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.rejected, k)
	delete(a.standIns, k)
	a.m.rejectedPolicies.Set(float64(len(a.rejected)))
	a.eng.DeletePolicy(namespace, name)
	if a.compiler.InvalidateNamespace(namespace) > 0 {
		a.changed()
	}
}

// Nodes enter no pod's rules: only this node's addresses matter, to the
// ruleset's judgement of traffic the host originates.

func (a *Agent) setNode(n *corev1.Node) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n.Name == a.opts.NodeName {
		a.nodeKnown = true // even when rejected: it exists
	}
	if err := a.eng.SetNode(n); err != nil {
		a.reject("Node", n.Name, err)
		return
	}
	a.accept("Node", n.Name)
	if n.Name != a.opts.NodeName {
		return
	}
	var addrs []netip.Addr
	for _, ad := range n.Status.Addresses {
		if ad.Type != corev1.NodeInternalIP && ad.Type != corev1.NodeExternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(ad.Address); err == nil {
			addrs = append(addrs, ip.Unmap())
		}
	}
	if !slices.Equal(addrs, a.nodeAddrs) {
		a.nodeAddrs = addrs
		a.changed()
	}
}

func (a *Agent) deleteNode(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.accept("Node", name)
	a.eng.DeleteNode(name)
	if name == a.opts.NodeName {
		a.nodeKnown = false
	}
	if name == a.opts.NodeName && len(a.nodeAddrs) > 0 {
		a.nodeAddrs = nil
		a.changed()
	}
}

// reject records an invalid Pod or Node (a.mu held).
func (a *Agent) reject(kind, name string, err error) {
	m := a.badObjects[kind]
	if m == nil {
		m = map[string]string{}
		a.badObjects[kind] = m
	}
	msg := oneLine(err.Error())
	if m[name] != msg {
		a.log.Error(err, kind+" rejected: the engine keeps its previous version, if any", "object", name)
	}
	m[name] = msg
	a.m.rejectedObjects.WithLabelValues(kind).Set(float64(len(m)))
}

func (a *Agent) accept(kind, name string) {
	m := a.badObjects[kind]
	if _, ok := m[name]; ok {
		delete(m, name)
		a.m.rejectedObjects.WithLabelValues(kind).Set(float64(len(m)))
	}
}

// sink is one source's view of the agent.
type sink struct {
	a    *Agent
	name string
}

func (s *sink) SetPod(p *corev1.Pod)                     { s.a.setPod(p) }
func (s *sink) DeletePod(namespace, name string)         { s.a.deletePod(namespace, name) }
func (s *sink) SetNamespace(ns *corev1.Namespace)        { s.a.setNamespace(ns) }
func (s *sink) DeleteNamespace(name string)              { s.a.deleteNamespace(name) }
func (s *sink) SetPolicy(np *networkingv1.NetworkPolicy) { s.a.setPolicy(np) }
func (s *sink) DeletePolicy(namespace, name string)      { s.a.deletePolicy(namespace, name) }
func (s *sink) SetNode(n *corev1.Node)                   { s.a.setNode(n) }
func (s *sink) DeleteNode(name string)                   { s.a.deleteNode(name) }
func (s *sink) Generation() uint64                       { return s.a.Status().Generation }
func (s *sink) Error(err error)                          { s.a.sourceError(s.name, err) }
func (s *sink) Synced()                                  { s.a.sourceSynced(s.name) }
func (s *sink) Batch(fn func()) {
	a := s.a
	a.mu.Lock()
	a.holds++
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.holds--
		a.flush = a.dirty // a batch of changes that alter nothing here needs no sync
		a.wake()
		a.mu.Unlock()
	}()
	fn()
}

func (a *Agent) sourceError(name string, err error) {
	a.mu.Lock()
	onErr := a.onSourceError
	a.mu.Unlock()
	if onErr != nil {
		onErr(fmt.Errorf("source %s: %w", name, err))
	}
	a.m.sourceErrors.WithLabelValues(name).Inc()
	a.log.Error(err, "source error: keeping its last good state", "source", name)
}

func (a *Agent) sourceSynced(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.sources[name] {
		a.sources[name] = true
		a.m.sourceSynced.WithLabelValues(name).Set(1)
		a.log.Info("source synced", "source", name)
		a.wake()
	}
}

func (a *Agent) allSynced() bool {
	for _, ok := range a.sources {
		if !ok {
			return false
		}
	}
	return len(a.sources) > 0
}

// ---- running ----

// start registers the sources and marks the agent running.
func (a *Agent) start(sources []Source) error {
	if len(sources) == 0 {
		return errors.New("agent: at least one source is needed")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.running || a.stopped {
		return errors.New("agent: already started")
	}
	for _, s := range sources {
		if _, dup := a.sources[s.Name()]; dup {
			return fmt.Errorf("agent: two sources named %q", s.Name())
		}
		a.sources[s.Name()] = false
		a.m.sourceSynced.WithLabelValues(s.Name()).Set(0)
	}
	a.running = true
	return nil
}

func (a *Agent) stop() {
	a.mu.Lock()
	a.running, a.stopped = false, true
	a.mu.Unlock()
}

// runSources runs every source with its own sink until ctx is done; a
// source that fails for good sends its error to errc.
func (a *Agent) runSources(ctx context.Context, sources []Source, errc chan<- error) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, s := range sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Run(ctx, &sink{a: a, name: s.Name()}); err != nil && ctx.Err() == nil {
				select {
				case errc <- fmt.Errorf("agent: source %s: %w", s.Name(), err):
				default:
				}
			}
		}()
	}
	return &wg
}

// DryRun runs the sources until each has fed its initial state and returns
// the ruleset the agent would apply, without touching the kernel. Any
// source error fails it. The agent cannot be used afterwards.
func (a *Agent) DryRun(ctx context.Context, sources ...Source) (*enforcer.Ruleset, error) {
	if err := a.start(sources); err != nil {
		return nil, err
	}
	defer a.stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(sources)+1)
	a.mu.Lock()
	a.onSourceError = func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	a.mu.Unlock()
	wg := a.runSources(ctx, sources, errc)
	defer wg.Wait()
	defer cancel()
	for {
		a.mu.Lock()
		done := a.allSynced()
		a.mu.Unlock()
		if done {
			return a.Compile()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case err := <-errc:
			return nil, err
		case <-a.kick:
		}
	}
}

// Run starts the sources and keeps the kernel in step with them until ctx
// is done. The kernel is first touched once every source has fed its
// initial state. It returns nil when ctx is done (leaving the table in
// place) and an error when a source fails for good. An agent runs once.
func (a *Agent) Run(ctx context.Context, sources ...Source) error {
	if err := a.start(sources); err != nil {
		return err
	}
	defer a.stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	wg := a.runSources(ctx, sources, errc)
	go func() {
		// A source that fails for good stops the agent.
		select {
		case <-ctx.Done():
		case err := <-errc:
			errc <- err
			cancel()
		}
	}()
	a.loop(ctx)
	cancel()
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// loop syncs changes, retries failures with backoff and resyncs
// periodically, until ctx is done.
//
// A change that finds the agent idle (no sync for at least Debounce) is
// synced at once: an isolated change reaches the kernel in the time a sync
// takes. Changes that arrive during a sync or within Debounce of its end
// are part of a burst: they wait until none has come for Debounce, but no
// longer than MaxDelay after the first of them, and are synced together.
// A change is never dropped: one arriving during a sync leaves the agent
// dirty, and the next sync takes it in.
func (a *Agent) loop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var retryAt, resyncAt time.Time
	backoff := a.opts.RetryMin
	failing := false
	for {
		now := time.Now()
		a.mu.Lock()
		ready := a.allSynced() && a.holds == 0
		var next time.Time
		full := false
		if ready {
			switch {
			case failing:
				next = retryAt
			case a.last == nil:
				next = now // first sync as soon as every source is in
			case a.dirty && a.flush:
				next = now
			case a.dirty && a.firstDirty.Sub(a.lastSync) >= a.opts.Debounce:
				next = now // the leading edge: the change found the agent idle
			case a.dirty:
				next = minTime(a.lastDirty.Add(a.opts.Debounce), a.firstDirty.Add(a.opts.MaxDelay))
			}
			if !resyncAt.IsZero() && (next.IsZero() || resyncAt.Before(next)) {
				next, full = resyncAt, true
			}
			if a.forceFull && !failing {
				next, full = now, true
			}
		}
		a.mu.Unlock()

		if !next.IsZero() && !next.After(now) {
			if ctx.Err() != nil {
				return
			}
			rep := a.sync(ctx, full)
			if ctx.Err() != nil {
				return
			}
			if rep.Err != nil {
				failing = true
				retryAt = time.Now().Add(backoff)
				backoff = min(2*backoff, a.opts.RetryMax)
			} else {
				failing = false
				backoff = a.opts.RetryMin
				if a.opts.ResyncPeriod > 0 && (full || resyncAt.IsZero()) {
					resyncAt = time.Now().Add(a.opts.ResyncPeriod)
				}
			}
			continue
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = next.Sub(now)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Compile compiles the ruleset the agent would apply now.
func (a *Agent) Compile() (*enforcer.Ruleset, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rs, _, err := a.compileLocked()
	return rs, err
}

// compileLocked compiles the local pods' ruleset (a.mu held, so the local
// set, the engine and the compiler's stale marks agree), asking the engine
// only for the local pods a change since the last compile may affect.
func (a *Agent) compileLocked() (*enforcer.Ruleset, uint64, error) {
	local := make([]types.NamespacedName, 0, len(a.local))
	for k := range a.local {
		local = append(local, k)
	}
	slices.SortFunc(local, func(x, y types.NamespacedName) int {
		return cmp.Or(strings.Compare(x.Namespace, y.Namespace), strings.Compare(x.Name, y.Name))
	})
	addrs := append(slices.Clone(a.opts.NodeAddrs), a.nodeAddrs...)
	slices.SortFunc(addrs, netip.Addr.Compare)
	addrs = slices.Compact(addrs)
	rs, err := a.compiler.Compile(a.eng, local, a.opts.enforcerOptions(addrs))
	return rs, a.gen, err
}

// sync compiles and applies; full replaces the table whole.
func (a *Agent) sync(ctx context.Context, full bool) SyncReport {
	rep := SyncReport{Resync: full}
	start := time.Now()
	a.mu.Lock()
	a.busySince = start
	first := !a.appliedOK
	var firstDirty time.Time
	if a.dirty {
		firstDirty = a.firstDirty
	}
	a.dirty, a.flush = false, false
	if full {
		a.forceFull = false
		// A full sync also compiles every local pod afresh, which repairs
		// rules a missed dependency would have left stale.
		a.compiler.InvalidateAll()
	}
	rs, gen, err := a.compileLocked()
	rep.Recompiled = a.compiler.Recompiled()
	a.mu.Unlock()
	rep.Generation, rep.Ruleset, rep.Compile = gen, rs, time.Since(start)
	a.m.compileDuration.Observe(rep.Compile.Seconds())

	stage := "compile"
	if err == nil {
		rep.Size = SizeOf(rs)
		if full {
			a.applier.Forget()
		}
		applyStart := time.Now()
		rep.Stats, err = a.applier.Apply(ctx, rs)
		rep.Apply = time.Since(applyStart)
		rep.Full = rep.Stats.Full || full || first
		stage = "apply"
		if err != nil && strings.HasPrefix(err.Error(), "enforcer: conntrack cleanup") {
			// The ruleset is in; only the cut of established flows failed.
			stage = "conntrack"
		}
	}
	rep.Err = err
	// A failed conntrack cut comes after the batch: the kernel holds the
	// ruleset. The retry then replaces the table whole, which cuts the
	// entries of every pod again.
	inKernel := err == nil || stage == "conntrack"
	if stage == "conntrack" {
		a.applier.Forget()
	}
	mode := "incremental"
	if rep.Full {
		mode = "full"
	}
	end := time.Now()

	a.mu.Lock()
	a.busySince = time.Time{}
	a.lastSync = end
	if err != nil {
		// Retry: the changes this sync took in are still to be applied.
		if !a.dirty || (!firstDirty.IsZero() && firstDirty.Before(a.firstDirty)) {
			a.firstDirty = cmp.Or(firstDirty, start)
		}
		a.dirty = true
		a.lastDirty = start
	} else if !firstDirty.IsZero() {
		rep.Latency = end.Sub(firstDirty)
	}
	if inKernel {
		a.applied, a.appliedOK = gen, true
		close(a.appliedCh)
		a.appliedCh = make(chan struct{})
	}
	r := rep
	a.last = &r
	a.mu.Unlock()

	switch {
	case err != nil && inKernel:
		a.m.syncErrors.WithLabelValues(stage).Inc()
		a.log.Error(err, "sync applied, but cutting the conntrack entries of newly denied flows failed; retrying with a full replace",
			"stage", stage, "generation", gen)
	case err != nil:
		a.m.syncErrors.WithLabelValues(stage).Inc()
		a.log.Error(err, "sync failed: the kernel keeps what it held; retrying", "stage", stage, "generation", gen,
			"compile", rep.Compile, "apply", rep.Apply)
	}
	if inKernel {
		a.m.syncs.WithLabelValues(mode).Inc()
		a.m.syncDuration.WithLabelValues(mode).Observe(end.Sub(start).Seconds())
		if rep.Latency > 0 {
			a.m.changeLatency.Observe(rep.Latency.Seconds())
		}
		a.m.lastSuccess.Set(float64(end.UnixNano()) / 1e9)
		a.m.conntrackDel.Add(float64(rep.Stats.ConntrackDeleted))
		a.m.observeRuleset(rep.Size)
		st := rep.Stats
		level := 0
		if !rep.Full && st.PodsChanged == 0 && st.ConntrackDeleted == 0 {
			level = 1 // nothing this node enforces changed
		}
		a.log.V(level).Info("synced", "mode", mode, "resync", full, "generation", gen,
			"localPods", rep.Size.Pods, "isolatedPods", rep.Size.Isolated, "chains", rep.Size.Chains,
			"rules", rep.Size.Rules, "elements", rep.Size.Elements,
			"recompiled", rep.Recompiled, "podsChanged", st.PodsChanged, "chainsAdded", st.ChainsAdded, "chainsDeleted", st.ChainsDeleted,
			"elementsAdded", st.ElementsAdded, "elementsDeleted", st.ElementsDeleted, "messages", st.Messages,
			"conntrackDeleted", st.ConntrackDeleted,
			"compile", rep.Compile, "batch", st.Batch, "conntrack", st.Conntrack, "latency", rep.Latency)
		for _, c := range rs.Conflicts {
			a.log.Info("address conflict: dispatched to the first pod only", "address", c.Addr.String(), "pods", fmt.Sprint(c.Pods))
		}
	}
	if a.opts.OnSync != nil {
		a.opts.OnSync(rep)
	}
	return rep
}

// Resync makes the agent replace the table whole now, as the periodic
// resync does: it repairs a table someone else changed.
func (a *Agent) Resync() {
	a.mu.Lock()
	a.forceFull = true
	a.wake()
	a.mu.Unlock()
}

// ---- state ----

// Status returns a snapshot of the agent's state.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := Status{
		Generation:    a.gen,
		Applied:       a.applied,
		SourcesSynced: a.allSynced(),
		LocalPods:     len(a.local),
		NodeKnown:     a.nodeKnown,
		Rejected:      make(map[types.NamespacedName]string, len(a.rejected)),
	}
	for k, v := range a.rejected {
		st.Rejected[k] = v
	}
	if a.last != nil {
		r := *a.last
		st.LastSync = &r
	}
	return st
}

// WaitApplied waits until the kernel holds generation gen or later (a
// sync compiled at or after it succeeded), or ctx is done.
func (a *Agent) WaitApplied(ctx context.Context, gen uint64) error {
	for {
		a.mu.Lock()
		if a.appliedOK && a.applied >= gen {
			a.mu.Unlock()
			return nil
		}
		ch := a.appliedCh
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for generation %d to reach the kernel: %w", gen, ctx.Err())
		case <-ch:
		}
	}
}

// Ready reports nil once a sync has succeeded, for readiness probes.
func (a *Agent) Ready() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case !a.allSynced():
		return errors.New("waiting for the sources' initial state")
	case a.last == nil:
		return errors.New("no sync yet")
	case !a.appliedOK:
		return fmt.Errorf("no successful sync yet: %v", a.last.Err)
	}
	return nil
}

// Healthy reports nil while the agent runs and no sync has been stuck for
// longer than Options.LivenessTimeout, for liveness probes. Failing syncs
// do not make it unhealthy: they are retried, and a restart would not help.
func (a *Agent) Healthy() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.stopped:
		return errors.New("agent stopped")
	case !a.running:
		return errors.New("agent not started")
	case !a.busySince.IsZero() && a.opts.LivenessTimeout > 0 && time.Since(a.busySince) > a.opts.LivenessTimeout:
		return fmt.Errorf("a sync has been running for %v", time.Since(a.busySince).Round(time.Second))
	}
	return nil
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// isolateOnly is the stand-in for a NetworkPolicy policylib rejects that
// has no earlier valid version: never fail open. It isolates the pods np
// selects (every pod of its namespace when the selector does not parse
// either) in np's directions (both when those do not parse), and allows
// nothing.
func isolateOnly(np *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
	out := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: np.Namespace, Name: np.Name}}
	if _, err := policylib.ParseSelector(&np.Spec.PodSelector); err == nil {
		out.Spec.PodSelector = *np.Spec.PodSelector.DeepCopy()
	}
	var ingress, egress bool
	for _, t := range policylib.DefaultPolicy(np).Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		default:
			ingress, egress = true, true
		}
	}
	if ingress {
		out.Spec.PolicyTypes = append(out.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
	}
	if egress {
		out.Spec.PolicyTypes = append(out.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
	}
	return out
}

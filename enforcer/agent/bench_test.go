package agent_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/podwall/podwall/internal/benchcluster"
	"k8s.io/apimachinery/pkg/types"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/podwall/podwall/enforcer"
	"github.com/podwall/podwall/enforcer/agent"
	"github.com/podwall/podwall/internal/netns"
	"github.com/podwall/podwall/policylib"
)

// The benchmarks measure the agent from a change to the kernel on the
// issue's large cluster: 10,000 pods in 100 namespaces, 1,000 policies,
// 110 of the pods on this node. The kernel is a lab's node namespace
// (root; skipped otherwise), so the figures include the nftables batch and
// the conntrack cleanup.

const benchNode = "local"

// largeSnapshot is the benchmarks' shared large cluster with spec.nodeName:
// its 110 local pods run on benchNode, the others elsewhere.
func largeSnapshot() policylib.Snapshot {
	c := benchcluster.Large
	s := c.Snapshot()
	local := map[types.NamespacedName]bool{}
	for _, k := range c.Local(110) {
		local[k] = true
	}
	for _, p := range s.Pods {
		p.Spec.NodeName = "elsewhere"
		if local[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}] {
			p.Spec.NodeName = benchNode
		}
	}
	return s
}

// extraPod is a pod on another node that many peers select (tier web).
func extraPod() *corev1.Pod {
	p := benchcluster.Extra()
	p.Spec.NodeName = "elsewhere"
	return p
}

// syncs collects an agent's sync reports.
type syncs chan agent.SyncReport

func (s syncs) record(r agent.SyncReport) {
	select {
	case s <- r:
	default:
	}
}

func (s syncs) drain() {
	for len(s) > 0 {
		<-s
	}
}

// benchAgent runs an agent for benchNode with its Applier in a lab's node
// namespace, fed by src.
func benchAgent(b *testing.B, rep syncs, src agent.Source) *agent.Agent {
	b.Helper()
	lab := netns.New(b)
	fd, err := lab.Node.FD()
	if err != nil {
		b.Fatal(err)
	}
	a, err := agent.New(agent.Options{
		NodeName:     benchNode,
		Applier:      enforcer.NewApplier(enforcer.WithNetNS(fd)),
		ResyncPeriod: -1,
		OnSync:       rep.record,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, src) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
	defer wcancel()
	if err := a.WaitApplied(wctx, 0); err != nil {
		b.Fatal(err)
	}
	return a
}

// feedSnapshot feeds a snapshot and says Synced.
func feedSnapshot(s policylib.Snapshot) func(agent.Sink) {
	return func(sk agent.Sink) {
		for _, ns := range s.Namespaces {
			sk.SetNamespace(ns)
		}
		for _, p := range s.Pods {
			sk.SetPod(p)
		}
		for _, np := range s.Policies {
			sk.SetPolicy(np)
		}
		sk.Synced()
	}
}

// funcSource runs a function on its sink, then serves do requests.
type funcSource struct {
	first func(agent.Sink)
	fn    chan func(agent.Sink)
}

func (f *funcSource) Name() string { return "bench" }
func (f *funcSource) Run(ctx context.Context, s agent.Sink) error {
	f.first(s)
	for {
		select {
		case <-ctx.Done():
			return nil
		case fn := <-f.fn:
			fn(s)
		}
	}
}

func (f *funcSource) do(fn func(agent.Sink)) {
	done := make(chan struct{})
	f.fn <- func(s agent.Sink) { fn(s); close(done) }
	<-done
}

func waitReport(b *testing.B, rep syncs, gen uint64) agent.SyncReport {
	b.Helper()
	for {
		select {
		case r := <-rep:
			if r.Err != nil {
				b.Fatal(r.Err)
			}
			if r.Generation >= gen {
				return r
			}
		case <-time.After(time.Minute):
			b.Fatal("no sync within a minute")
		}
	}
}

func report(b *testing.B, rs []agent.SyncReport, total []time.Duration) {
	var compile, apply, batch, conntrack []time.Duration
	for _, r := range rs {
		compile = append(compile, r.Compile)
		apply = append(apply, r.Apply)
		batch = append(batch, r.Stats.Batch)
		conntrack = append(conntrack, r.Stats.Conntrack)
	}
	b.ReportMetric(median(compile).Seconds()*1e3, "compile-ms")
	b.ReportMetric(median(apply).Seconds()*1e3, "apply-ms")
	b.ReportMetric(median(batch).Seconds()*1e3, "batch-ms")
	b.ReportMetric(median(conntrack).Seconds()*1e3, "conntrack-ms")
	b.ReportMetric(median(total).Seconds()*1e3, "to-kernel-ms")
	var recompiled []time.Duration
	for _, r := range rs {
		recompiled = append(recompiled, time.Duration(r.Recompiled))
	}
	b.ReportMetric(float64(median(recompiled)), "recompiled-pods")
	b.ReportMetric(float64(rs[len(rs)-1].Size.Elements), "elements")
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkAgentFullSync: a full sync (compile the 110 local pods, replace
// the table whole), as a periodic resync or a restart does it.
func BenchmarkAgentFullSync(b *testing.B) {
	rep := make(syncs, 100)
	src := &funcSource{first: feedSnapshot(largeSnapshot()), fn: make(chan func(agent.Sink))}
	a := benchAgent(b, rep, src)
	var rs []agent.SyncReport
	var total []time.Duration
	for b.Loop() {
		rep.drain()
		start := time.Now()
		gen := a.Status().Generation
		a.Resync()
		r := waitReport(b, rep, gen)
		if !r.Full {
			b.Fatal("not a full replace")
		}
		total = append(total, time.Since(start))
		rs = append(rs, r)
	}
	report(b, rs, total)
}

// idle is how long the change benchmarks leave the agent alone before each
// change: more than its debounce period, so the change is an isolated one
// (or a burst's first), and long enough for the kernel to finish the
// previous transaction's deferred work, as it has between real changes.
const idle = 50 * time.Millisecond

// BenchmarkAgentPodElsewhere: one pod added or removed on another node,
// which many local pods' peers select, fed as a plain change (as an
// informer feeds it) to an agent with the default debounce, idle since its
// last sync, to the kernel holding the change: what an isolated change
// costs end to end.
func BenchmarkAgentPodElsewhere(b *testing.B) {
	rep := make(syncs, 100)
	src := &funcSource{first: feedSnapshot(largeSnapshot()), fn: make(chan func(agent.Sink))}
	benchAgent(b, rep, src)
	extra := extraPod()
	var rs []agent.SyncReport
	var total, added, removed []time.Duration
	for i := 0; b.Loop(); i++ {
		time.Sleep(idle)
		rep.drain()
		start := time.Now()
		var gen uint64
		src.do(func(s agent.Sink) {
			if i%2 == 0 {
				s.SetPod(extra)
			} else {
				s.DeletePod(extra.Namespace, extra.Name)
			}
			gen = s.Generation()
		})
		r := waitReport(b, rep, gen)
		d := time.Since(start)
		total = append(total, d)
		if i%2 == 0 {
			added = append(added, d)
		} else {
			removed = append(removed, d)
		}
		if r.Stats.Full {
			b.Fatal("full replace")
		}
		rs = append(rs, r)
	}
	report(b, rs, total)
	// Adding a peer only widens rules; removing one narrows them, which
	// costs a conntrack dump.
	b.ReportMetric(median(added).Seconds()*1e3, "add-to-kernel-ms")
	if len(removed) > 0 {
		b.ReportMetric(median(removed).Seconds()*1e3, "remove-to-kernel-ms")
	}
}

// BenchmarkAgentBurst: 50 pods on other nodes, which many local pods'
// peers select, come up one after another as fast as the source feeds
// them (a rollout seen by an informer), then go; from the first change to
// the kernel holding the last, and the syncs it took.
func BenchmarkAgentBurst(b *testing.B) {
	rep := make(syncs, 1000)
	src := &funcSource{first: feedSnapshot(largeSnapshot()), fn: make(chan func(agent.Sink))}
	benchAgent(b, rep, src)
	const burst = 50
	pods := make([]*corev1.Pod, burst)
	for j := range pods {
		p := extraPod()
		p.Name = fmt.Sprintf("burst-%d", j)
		p.Status.PodIP = netip.AddrFrom4([4]byte{10, 0, 201, byte(j + 1)}).String()
		pods[j] = p
	}
	var rs []agent.SyncReport
	var total []time.Duration
	var count []int
	for i := 0; b.Loop(); i++ {
		time.Sleep(idle)
		rep.drain()
		start := time.Now()
		var gen uint64
		for _, p := range pods {
			src.do(func(s agent.Sink) {
				if i%2 == 0 {
					s.SetPod(p)
				} else {
					s.DeletePod(p.Namespace, p.Name)
				}
				gen = s.Generation()
			})
		}
		n := 0
		for {
			r := waitReport(b, rep, 0)
			n++
			rs = append(rs, r)
			if r.Generation >= gen {
				break
			}
		}
		total = append(total, time.Since(start))
		count = append(count, n)
	}
	report(b, rs, total)
	slices.Sort(count)
	b.ReportMetric(float64(count[len(count)/2]), "syncs")
}

// BenchmarkManifestPodElsewhere: the same change through a watched
// manifest directory holding the large cluster: a file with the extra pod
// appears or goes; the watcher, the reload of every file and the sync
// follow.
func BenchmarkManifestPodElsewhere(b *testing.B) {
	dir := b.TempDir()
	writeBenchManifests(b, dir, largeSnapshot())
	rep := make(syncs, 100)
	lds := newLoads()
	src := &agent.ManifestSource{Paths: []string{dir}, Settle: 5 * time.Millisecond, OnLoad: lds.record}
	benchAgent(b, rep, src)
	data, err := yaml.Marshal(extraPod())
	if err != nil {
		b.Fatal(err)
	}
	extra := filepath.Join(dir, "extra.yaml")
	var rs []agent.SyncReport
	var total, loads []time.Duration
	for i := 0; b.Loop(); i++ {
		rep.drain()
		for len(lds.ch) > 0 {
			<-lds.ch
		}
		start := time.Now()
		if i%2 == 0 {
			writeFile(b, extra, string(data))
		} else {
			removeFile(b, extra)
		}
		var lr agent.LoadResult
		select {
		case lr = <-lds.ch:
		case <-time.After(time.Minute):
			b.Fatal("no reload")
		}
		if lr.Err != nil || lr.Changed != 1 {
			b.Fatalf("reload: %+v", lr)
		}
		r := waitReport(b, rep, lr.Generation)
		total = append(total, time.Since(start))
		loads = append(loads, lr.Duration)
		rs = append(rs, r)
	}
	report(b, rs, total)
	b.ReportMetric(median(loads).Seconds()*1e3, "reload-ms")
}

// writeBenchManifests writes a snapshot as one file per namespace (its
// Namespace, pods and policies).
func writeBenchManifests(b *testing.B, dir string, s policylib.Snapshot) {
	b.Helper()
	files := map[string]*strings.Builder{}
	add := func(ns string, obj any) {
		data, err := yaml.Marshal(obj)
		if err != nil {
			b.Fatal(err)
		}
		w := files[ns]
		if w == nil {
			w = &strings.Builder{}
			files[ns] = w
		}
		w.WriteString("---\n")
		w.Write(data)
	}
	for _, ns := range s.Namespaces {
		ns.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}
		add(ns.Name, ns)
	}
	for _, p := range s.Pods {
		add(p.Namespace, p)
	}
	for _, np := range s.Policies {
		add(np.Namespace, np)
	}
	for ns, w := range files {
		if err := os.WriteFile(filepath.Join(dir, ns+".yaml"), []byte(w.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

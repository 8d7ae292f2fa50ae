package agent_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
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

// benchCluster is enforcer's benchmark cluster (enforcer/bench_test.go,
// itself policylib's), with spec.nodeName: 110 pods spread over the
// namespaces run on benchNode, the others elsewhere.
type benchCluster struct {
	namespaces, podsPerNS, policies int
}

const benchNode = "local"

var large = benchCluster{namespaces: 100, podsPerNS: 100, policies: 1000}

func (c benchCluster) apps() int { return 20 }

func (c benchCluster) snapshot() policylib.Snapshot {
	var s policylib.Snapshot
	rng := rand.New(rand.NewPCG(1, 2))
	total := c.namespaces * c.podsPerNS
	local := map[int]bool{}
	for i := range 110 {
		local[i*total/110] = true
	}
	for i := range c.namespaces {
		s.Namespaces = append(s.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name:   fmt.Sprintf("ns-%d", i),
			Labels: map[string]string{"team": fmt.Sprintf("team-%d", i%10), "env": [...]string{"prod", "dev"}[i%2]},
		}})
		for j := range c.podsPerNS {
			n := i*c.podsPerNS + j
			p := benchPod(fmt.Sprintf("ns-%d", i), fmt.Sprintf("pod-%d", j),
				map[string]string{"app": fmt.Sprintf("app-%d", j%c.apps()), "tier": [...]string{"web", "api", "db"}[j%3], "version": fmt.Sprint(j % 2)},
				netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}))
			p.Spec.NodeName = "elsewhere"
			if local[n] {
				p.Spec.NodeName = benchNode
			}
			s.Pods = append(s.Pods, p)
		}
	}
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	for k := range c.policies {
		ns := k % c.namespaces
		app := (k / c.namespaces) % c.apps()
		end := int32(9100)
		np := &networkingv1.NetworkPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns-%d", ns), Name: fmt.Sprintf("policy-%d", k)},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app-%d", app)}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{
					{
						From: []networkingv1.NetworkPolicyPeer{
							{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "web"}}},
							{
								NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("team-%d", rng.IntN(10))}},
								PodSelector:       &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"api", "web"}}}},
							},
						},
						Ports: []networkingv1.NetworkPolicyPort{
							{Protocol: &tcp, Port: &intstr.IntOrString{Type: intstr.String, StrVal: "http"}},
							{Protocol: &tcp, Port: &intstr.IntOrString{IntVal: 9000}, EndPort: &end},
						},
					},
					{
						From:  []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "192.168.0.0/16", Except: []string{"192.168.1.0/24"}}}},
						Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &intstr.IntOrString{IntVal: 443}}},
					},
				},
			},
		}
		if k%4 == 0 {
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
			np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{
				{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &intstr.IntOrString{IntVal: 53}}}},
				{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}}}},
			}
		}
		s.Policies = append(s.Policies, np)
	}
	return s
}

func benchPod(ns, name string, l map[string]string, a netip.Addr) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
			{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
		}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: a.String()},
	}
}

// extraPod is a pod on another node that many peers select (tier web).
func extraPod() *corev1.Pod {
	p := benchPod("ns-5", "extra", map[string]string{"app": "app-1", "tier": "web", "version": "0"}, netip.MustParseAddr("10.0.200.1"))
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
	var compile, apply, batch []time.Duration
	for _, r := range rs {
		compile = append(compile, r.Compile)
		apply = append(apply, r.Apply)
		batch = append(batch, r.Stats.Batch)
	}
	b.ReportMetric(median(compile).Seconds()*1e3, "compile-ms")
	b.ReportMetric(median(apply).Seconds()*1e3, "apply-ms")
	b.ReportMetric(median(batch).Seconds()*1e3, "batch-ms")
	b.ReportMetric(median(total).Seconds()*1e3, "to-kernel-ms")
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
	src := &funcSource{first: feedSnapshot(large.snapshot()), fn: make(chan func(agent.Sink))}
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

// BenchmarkAgentPodElsewhere: one pod added or removed on another node,
// which many local pods' peers select, fed as a batch (no debounce wait),
// to the kernel holding the change.
func BenchmarkAgentPodElsewhere(b *testing.B) {
	rep := make(syncs, 100)
	src := &funcSource{first: feedSnapshot(large.snapshot()), fn: make(chan func(agent.Sink))}
	benchAgent(b, rep, src)
	extra := extraPod()
	var rs []agent.SyncReport
	var total []time.Duration
	for i := 0; b.Loop(); i++ {
		rep.drain()
		start := time.Now()
		var gen uint64
		src.do(func(s agent.Sink) {
			s.Batch(func() {
				if i%2 == 0 {
					s.SetPod(extra)
				} else {
					s.DeletePod(extra.Namespace, extra.Name)
				}
			})
			gen = s.Generation()
		})
		r := waitReport(b, rep, gen)
		total = append(total, time.Since(start))
		if r.Stats.Full {
			b.Fatal("full replace")
		}
		rs = append(rs, r)
	}
	report(b, rs, total)
}

// BenchmarkManifestPodElsewhere: the same change through a watched
// manifest directory holding the large cluster: a file with the extra pod
// appears or goes; the watcher, the reload of every file and the sync
// follow.
func BenchmarkManifestPodElsewhere(b *testing.B) {
	dir := b.TempDir()
	writeBenchManifests(b, dir, large.snapshot())
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

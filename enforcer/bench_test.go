package enforcer_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podwall/podwall/enforcer"
	"github.com/podwall/podwall/internal/netns"
	"github.com/podwall/podwall/policylib"
)

// benchCluster is the synthetic cluster of policylib's benchmarks (copied
// from policylib/bench_test.go): namespaces of pods with app/tier labels and
// named ports, and per-app policies with pod, namespace and ipBlock peers
// and numeric, named and ranged ports, a quarter of them with egress.
type benchCluster struct {
	namespaces, podsPerNS, policies int
}

func (c benchCluster) apps() int { return 20 }

func (c benchCluster) snapshot() policylib.Snapshot {
	var s policylib.Snapshot
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range c.namespaces {
		s.Namespaces = append(s.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name:   fmt.Sprintf("ns-%d", i),
			Labels: map[string]string{"team": fmt.Sprintf("team-%d", i%10), "env": [...]string{"prod", "dev"}[i%2]},
		}})
		for j := range c.podsPerNS {
			n := i*c.podsPerNS + j
			s.Pods = append(s.Pods, benchPod(fmt.Sprintf("ns-%d", i), fmt.Sprintf("pod-%d", j),
				map[string]string{"app": fmt.Sprintf("app-%d", j%c.apps()), "tier": [...]string{"web", "api", "db"}[j%3], "version": fmt.Sprint(j % 2)},
				netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})))
		}
	}
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	for k := range c.policies {
		ns := k % c.namespaces
		app := (k / c.namespaces) % c.apps()
		end := int32(9100)
		np := &networkingv1.NetworkPolicy{
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
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
			{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
		}}}},
		Status: corev1.PodStatus{PodIP: a.String()},
	}
}

// local is a node's share of the pods: 110 (the kubelet's default maximum)
// spread over the namespaces.
func (c benchCluster) local() []types.NamespacedName {
	total := c.namespaces * c.podsPerNS
	var out []types.NamespacedName
	for i := range 110 {
		n := i * total / 110
		out = append(out, types.NamespacedName{Namespace: fmt.Sprintf("ns-%d", n/c.podsPerNS), Name: fmt.Sprintf("pod-%d", n%c.podsPerNS)})
	}
	return out
}

// extraPod is a pod on another node that many peers select (tier web).
func (c benchCluster) extraPod() *corev1.Pod {
	return benchPod("ns-5", "extra", map[string]string{"app": "app-1", "tier": "web", "version": "0"}, netip.MustParseAddr("10.0.200.1"))
}

var benchNode = benchCluster{namespaces: 100, podsPerNS: 100, policies: 1000}

func benchEngine(b *testing.B) *policylib.Engine {
	e, err := policylib.Build(benchNode.snapshot())
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkCompileRender compiles and renders 110 local pods of a cluster
// of 10,000 pods and 1,000 policies.
func BenchmarkCompileRender(b *testing.B) {
	e := benchEngine(b)
	local := benchNode.local()
	b.ReportAllocs()
	var size int
	for b.Loop() {
		rs, err := enforcer.Compile(e, local, enforcer.Options{})
		if err != nil {
			b.Fatal(err)
		}
		size = len(rs.Render())
	}
	b.ReportMetric(float64(size), "bytes-rendered")
}

func BenchmarkCompile(b *testing.B) {
	e := benchEngine(b)
	local := benchNode.local()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := enforcer.Compile(e, local, enforcer.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyFull replaces the table whole in a throwaway namespace.
// Its elements are the kernel's: an address range in an interval set is a
// start and an end element.
func BenchmarkApplyFull(b *testing.B) {
	lab := netns.New(b)
	e := benchEngine(b)
	rs, err := enforcer.Compile(e, benchNode.local(), enforcer.Options{})
	if err != nil {
		b.Fatal(err)
	}
	a := applierIn(b, lab.Node, enforcer.WithConntrackCleanup(false))
	var st enforcer.Stats
	b.ReportAllocs()
	for b.Loop() {
		a.Forget()
		st = apply(b, a, rs)
	}
	b.ReportMetric(float64(st.Messages), "messages")
	b.ReportMetric(float64(st.ElementsAdded), "elements")
}

// BenchmarkUpdateOnePodElsewhere adds or removes one pod on another node
// that many local pods' peers select, then compiles and applies the
// change incrementally (conntrack cleanup included).
func BenchmarkUpdateOnePodElsewhere(b *testing.B) {
	lab := netns.New(b)
	e := benchEngine(b)
	local := benchNode.local()
	rs, err := enforcer.Compile(e, local, enforcer.Options{})
	if err != nil {
		b.Fatal(err)
	}
	a := applierIn(b, lab.Node)
	apply(b, a, rs)
	extra := benchNode.extraPod()
	var st enforcer.Stats
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			if err := e.SetPod(extra); err != nil {
				b.Fatal(err)
			}
		} else {
			e.DeletePod(extra.Namespace, extra.Name)
		}
		rs, err := enforcer.Compile(e, local, enforcer.Options{})
		if err != nil {
			b.Fatal(err)
		}
		st = apply(b, a, rs)
		if st.Full {
			b.Fatal("full replace")
		}
	}
	b.ReportMetric(float64(st.ElementsAdded+st.ElementsDeleted), "elements-changed")
	b.ReportMetric(float64(st.Messages), "messages")
}

// BenchmarkBuildFull builds the batch that replaces the table whole,
// without sending it: the user-space share of BenchmarkApplyFull.
func BenchmarkBuildFull(b *testing.B) {
	e := benchEngine(b)
	rs, err := enforcer.Compile(e, benchNode.local(), enforcer.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var msgs, size int
	for b.Loop() {
		msgs, size = enforcer.BuildBatch(nil, rs)
	}
	b.ReportMetric(float64(msgs), "messages")
	b.ReportMetric(float64(size), "bytes")
}

// BenchmarkBuildUpdate builds, without sending, the incremental batch for
// one pod added elsewhere in the cluster: the user-space share of
// BenchmarkUpdateOnePodElsewhere's Apply.
func BenchmarkBuildUpdate(b *testing.B) {
	e := benchEngine(b)
	local := benchNode.local()
	before, err := enforcer.Compile(e, local, enforcer.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.SetPod(benchNode.extraPod()); err != nil {
		b.Fatal(err)
	}
	after, err := enforcer.Compile(e, local, enforcer.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var msgs, size int
	for b.Loop() {
		msgs, size = enforcer.BuildBatch(before, after)
	}
	b.ReportMetric(float64(msgs), "messages")
	b.ReportMetric(float64(size), "bytes")
}

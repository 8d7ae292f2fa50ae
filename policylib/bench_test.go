package policylib_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podwall/podwall/policylib"
)

// benchCluster describes a synthetic cluster shaped like the anchors'
// measurements: namespaces of pods with app/tier labels and named ports, and
// per-app policies with pod, namespace, ipBlock peers and numeric, named and
// ranged ports.
type benchCluster struct {
	namespaces, podsPerNS, policies int
	skewed                          bool // every policy in the first namespace
}

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
			s.Pods = append(s.Pods, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{
					Namespace: fmt.Sprintf("ns-%d", i), Name: fmt.Sprintf("pod-%d", j),
					Labels: map[string]string{"app": fmt.Sprintf("app-%d", j%c.apps()), "tier": [...]string{"web", "api", "db"}[j%3], "version": fmt.Sprint(j % 2)},
				},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
					{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
					{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
				}}}},
				Status: corev1.PodStatus{PodIP: netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}).String()},
			})
		}
	}
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	for k := range c.policies {
		ns := k % c.namespaces
		if c.skewed {
			ns = 0
		}
		app := (k / c.namespaces) % c.apps()
		if c.skewed {
			app = k % c.apps()
		}
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

// apps is the number of distinct app labels per namespace: in the skewed
// cluster every pod of the crowded namespace has its own app, so each is
// selected by policies/podsPerNS policies.
func (c benchCluster) apps() int {
	if c.skewed {
		return c.podsPerNS
	}
	return 20
}

var (
	uniform = benchCluster{namespaces: 100, podsPerNS: 100, policies: 1000}
	skewed  = benchCluster{namespaces: 100, podsPerNS: 100, policies: 1000, skewed: true}
)

func mustBuild(b testing.TB, s policylib.Snapshot) *policylib.Engine {
	e, err := policylib.Build(s)
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// benchFlows draws flows between random pods, weighted to the namespaces
// that policies crowd, so the benchmark measures the expensive path.
func benchFlows(c benchCluster, n int) []policylib.Flow {
	rng := rand.New(rand.NewPCG(3, 4))
	flows := make([]policylib.Flow, n)
	for i := range flows {
		dstNS := rng.IntN(c.namespaces)
		if c.skewed {
			dstNS = 0
		}
		flows[i] = policylib.Flow{
			From:     policylib.PodEndpoint(fmt.Sprintf("ns-%d", rng.IntN(c.namespaces)), fmt.Sprintf("pod-%d", rng.IntN(c.podsPerNS))),
			To:       policylib.PodEndpoint(fmt.Sprintf("ns-%d", dstNS), fmt.Sprintf("pod-%d", rng.IntN(c.podsPerNS))),
			Protocol: policylib.TCP,
			Port:     []int32{8080, 9050, 443, 80}[rng.IntN(4)],
		}
	}
	return flows
}

func BenchmarkDecide(b *testing.B) {
	for _, c := range []struct {
		name string
		benchCluster
	}{{"uniform", uniform}, {"skewed", skewed}} {
		b.Run(c.name, func(b *testing.B) {
			e := mustBuild(b, c.snapshot())
			flows := benchFlows(c.benchCluster, 4096)
			allowed := 0
			for _, f := range flows {
				if d, _ := e.Decide(f); d.Allowed {
					allowed++
				}
			}
			b.ReportMetric(float64(allowed)/float64(len(flows)), "allowed-share")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := e.Decide(flows[i&4095]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecideParallel checks that concurrent readers scale: the
// enforcer and the webhook decide from many goroutines.
func BenchmarkDecideParallel(b *testing.B) {
	e := mustBuild(b, uniform.snapshot())
	flows := benchFlows(uniform, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			e.Decide(flows[i&4095])
			i++
		}
	})
}

func BenchmarkMatrix1000x1000(b *testing.B) {
	s := uniform.snapshot()
	e := mustBuild(b, s)
	pods := make([]types.NamespacedName, 1000)
	for i := range pods {
		pods[i] = types.NamespacedName{Namespace: s.Pods[i*10].Namespace, Name: s.Pods[i*10].Name}
	}
	ports := []policylib.PortProtocol{{Port: 8080, Protocol: policylib.TCP}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Matrix(pods, ports); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBuild(b *testing.B) {
	for _, c := range []struct {
		name string
		benchCluster
	}{{"uniform", uniform}, {"skewed", skewed}} {
		b.Run(c.name, func(b *testing.B) {
			s := c.snapshot()
			b.ReportAllocs()
			for b.Loop() {
				mustBuild(b, s)
			}
		})
	}
}

func BenchmarkRelabelPod(b *testing.B) {
	for _, c := range []struct {
		name string
		benchCluster
	}{{"uniform", uniform}, {"skewed", skewed}} {
		b.Run(c.name, func(b *testing.B) {
			s := c.snapshot()
			e := mustBuild(b, s)
			pod := s.Pods[7].DeepCopy() // in ns-0, the crowded one when skewed
			versions := [2]*corev1.Pod{pod.DeepCopy(), pod.DeepCopy()}
			versions[1].Labels["tier"] = "db"
			versions[1].Labels["app"] = "app-3"
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := e.SetPod(versions[i&1]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSetPolicy(b *testing.B) {
	s := uniform.snapshot()
	e := mustBuild(b, s)
	np := s.Policies[1].DeepCopy()
	versions := [2]*networkingv1.NetworkPolicy{np.DeepCopy(), np.DeepCopy()}
	versions[1].Spec.PodSelector.MatchLabels["app"] = "app-9"
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := e.SetPolicy(versions[i&1]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRelabelNamespace(b *testing.B) {
	s := uniform.snapshot()
	e := mustBuild(b, s)
	versions := [2]*corev1.Namespace{s.Namespaces[3].DeepCopy(), s.Namespaces[3].DeepCopy()}
	versions[1].Labels["team"] = "team-0"
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		e.SetNamespace(versions[i&1])
	}
}

// BenchmarkMemory reports the engine's heap per pod and per policy.
func BenchmarkMemory(b *testing.B) {
	s := uniform.snapshot()
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for b.Loop() {
		base := heap()
		pods := mustBuild(b, policylib.Snapshot{Namespaces: s.Namespaces, Pods: s.Pods})
		withPods := heap()
		all := mustBuild(b, s)
		withAll := heap()
		b.ReportMetric(float64(withPods-base)/float64(len(s.Pods)), "B/pod")
		b.ReportMetric(float64(withAll-withPods-(withPods-base))/float64(len(s.Policies)), "B/policy")
		runtime.KeepAlive(pods)
		runtime.KeepAlive(all)
	}
}

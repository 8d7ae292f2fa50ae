package policylib_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/podwall/podwall/internal/benchcluster"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podwall/podwall/policylib"
)

// benchCluster is the benchmarks' shared synthetic cluster.
type benchCluster = benchcluster.Cluster

var (
	uniform = benchcluster.Large
	skewed  = benchCluster{Namespaces: 100, PodsPerNS: 100, Policies: 1000, Skewed: true}
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
		dstNS := rng.IntN(c.Namespaces)
		if c.Skewed {
			dstNS = 0
		}
		flows[i] = policylib.Flow{
			From:     policylib.PodEndpoint(fmt.Sprintf("ns-%d", rng.IntN(c.Namespaces)), fmt.Sprintf("pod-%d", rng.IntN(c.PodsPerNS))),
			To:       policylib.PodEndpoint(fmt.Sprintf("ns-%d", dstNS), fmt.Sprintf("pod-%d", rng.IntN(c.PodsPerNS))),
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
			e := mustBuild(b, c.Snapshot())
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
	e := mustBuild(b, uniform.Snapshot())
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
	s := uniform.Snapshot()
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
			s := c.Snapshot()
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
			s := c.Snapshot()
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
	s := uniform.Snapshot()
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
	s := uniform.Snapshot()
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
	s := uniform.Snapshot()
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

// BenchmarkPoliciesDependingOnPod: the question an incremental dataplane
// asks around every pod change, on the large cluster, for a pod many peers
// select.
func BenchmarkPoliciesDependingOnPod(b *testing.B) {
	e := mustBuild(b, uniform.Snapshot())
	extra := benchcluster.Extra()
	if err := e.SetPod(extra); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		n = len(e.PoliciesDependingOnPod(extra.Namespace, extra.Name))
	}
	b.ReportMetric(float64(n), "policies")
}

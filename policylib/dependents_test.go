package policylib_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podwall/podwall/policylib"
)

// tNames renders a list of policy names as "ns/name ns/name".
func tNames(ks []types.NamespacedName) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = k.String()
	}
	return strings.Join(s, " ")
}

func TestPoliciesDependingOnPod(t *testing.T) {
	web := tCPort("http", "", 80)
	s := policylib.Snapshot{
		Namespaces: []*corev1.Namespace{tNS("a", tLabels("team", "x")), tNS("b", tLabels("team", "y"))},
		Pods: []*corev1.Pod{
			tPod("a", "web", tLabels("app", "web"), "10.0.0.1", web),
			tPod("a", "db", tLabels("app", "db"), "10.0.0.2"),
			tPod("b", "web", tLabels("app", "web"), "10.0.1.1", web),
			tPod("b", "pending", tLabels("app", "web"), ""),
			tHostPod("b", "host", tLabels("app", "web"), "192.168.0.1"),
			tPod("b", "outside", nil, "172.16.0.1"),
		},
		Policies: []*networkingv1.NetworkPolicy{
			// Pod peers: own namespace, then any namespace with team=x;
			// two peers on the same set count once.
			tPolicy("a", "from-web", nil, tIngress(tPeers(tPodPeer(tSel("app", "web")), tPodPeer(tSel("app", "web"))))),
			tPolicy("b", "from-team-x", nil, tIngress(tPeers(tNSPodPeer(tSel("team", "x"), tSel())))),
			// ipBlocks that match pods enter the rules as written...
			tPolicy("b", "from-block", nil, tIngress(tPeers(tIPPeer("10.0.0.0/16")))),
			// ...except where an egress rule names a port.
			tPolicy("b", "to-block-http", nil, tTypes(tOut), tEgress(tPeers(tIPPeer("10.0.0.0/16", "10.0.1.0/24")), tPort("", "http"))),
			// A named port without peers resolves on every pod.
			tPolicy("a", "to-any-http", nil, tTypes(tOut), tEgress(nil, tPort("", "http"))),
			tPolicy("a", "to-any-dns", nil, tTypes(tOut), tEgress(nil, tPort(corev1.ProtocolUDP, "dns"))),
			// Rules of a direction the policy does not isolate count for
			// nothing.
			tPolicy("a", "ingress-only", nil, tTypes(tIn), tEgress(tPeers(tPodPeer(tSel())))),
		},
	}
	e := tBuild(t, s)
	for _, c := range []struct{ pod, want string }{
		{"a/web", "a/from-web a/to-any-http b/from-team-x b/to-block-http"},
		{"a/db", "b/from-team-x"},
		{"b/web", "a/to-any-http"}, // in the block, but in its except
		{"b/pending", ""},          // no address: in no address set
		{"b/host", ""},             // on the host network: in no set
		{"b/outside", ""},
		{"b/unknown", ""},
	} {
		ns, name, _ := strings.Cut(c.pod, "/")
		if got := tNames(e.PoliciesDependingOnPod(ns, name)); got != c.want {
			t.Errorf("PoliciesDependingOnPod(%s) = %q, want %q", c.pod, got, c.want)
		}
	}

	// When ipBlocks do not match pods, pod addresses are cut out of every
	// block, so a pod in one counts whatever the rule's ports.
	e = tBuild(t, s, policylib.WithIPBlockMatchesPods(false))
	if got, want := tNames(e.PoliciesDependingOnPod("a", "db")), "b/from-block b/from-team-x b/to-block-http"; got != want {
		t.Errorf("ipBlocks not matching pods: PoliciesDependingOnPod(a/db) = %q, want %q", got, want)
	}

	// The index follows policy changes.
	e.DeletePolicy("b", "from-team-x")
	if err := e.SetPolicy(tPolicy("a", "from-web", nil, tIngress(tPeers(tPodPeer(tSel("app", "db")))))); err != nil {
		t.Fatal(err)
	}
	if got, want := tNames(e.PoliciesDependingOnPod("a", "web")), "a/to-any-http b/from-block b/to-block-http"; got != want {
		t.Errorf("after the policy changes: PoliciesDependingOnPod(a/web) = %q, want %q", got, want)
	}
	if got, want := tNames(e.PoliciesDependingOnPod("a", "db")), "a/from-web b/from-block b/to-block-http"; got != want {
		t.Errorf("after the policy changes: PoliciesDependingOnPod(a/db) = %q, want %q", got, want)
	}
	// And pod changes: relabelled, a/db leaves from-web's set.
	if err := e.SetPod(tPod("a", "db", tLabels("app", "cache"), "10.0.0.2")); err != nil {
		t.Fatal(err)
	}
	if got, want := tNames(e.PoliciesDependingOnPod("a", "db")), "b/from-block b/to-block-http"; got != want {
		t.Errorf("after the relabel: PoliciesDependingOnPod(a/db) = %q, want %q", got, want)
	}
}

func TestPoliciesDependingOnNamespace(t *testing.T) {
	e := tBuild(t, policylib.Snapshot{
		Namespaces: []*corev1.Namespace{tNS("a", tLabels("team", "x")), tNS("b", tLabels("team", "x")), tNS("c", tLabels("team", "x"))},
		Pods: []*corev1.Pod{
			tPod("a", "web", tLabels("app", "web"), "10.0.0.1"),
			tPod("b", "pending", tLabels("app", "web"), ""),
		},
		Policies: []*networkingv1.NetworkPolicy{
			tPolicy("z", "from-team-x", nil, tIngress(tPeers(tNSPeer(tSel("team", "x"))))),
			tPolicy("z", "from-team-x-db", nil, tIngress(tPeers(tNSPodPeer(tSel("team", "x"), tSel("app", "db"))))),
			tPolicy("z", "from-team-y", nil, tIngress(tPeers(tNSPeer(tSel("team", "y"))))),
			tPolicy("a", "from-own", nil, tIngress(tPeers(tPodPeer(tSel())))),
		},
	})
	for _, c := range []struct{ ns, want string }{
		{"a", "z/from-team-x"}, // no db pod, so from-team-x-db's set holds none of a's pods
		{"b", ""},              // its only pod has no address
		{"c", ""},              // no pods
		{"unknown", ""},
	} {
		if got := tNames(e.PoliciesDependingOnNamespace(c.ns)); got != c.want {
			t.Errorf("PoliciesDependingOnNamespace(%s) = %q, want %q", c.ns, got, c.want)
		}
	}
	// Asked before and after a relabel, the union names both sides.
	before := e.PoliciesDependingOnNamespace("a")
	e.SetNamespace(tNS("a", tLabels("team", "y")))
	after := e.PoliciesDependingOnNamespace("a")
	if got, want := tNames(before)+" | "+tNames(after), "z/from-team-x | z/from-team-y"; got != want {
		t.Errorf("before | after the relabel: %q, want %q", got, want)
	}
}

func TestHoldsPodAndNamespace(t *testing.T) {
	p := tPod("a", "web", tLabels("app", "web"), "10.0.0.1", tCPort("http", "", 80))
	e := tBuild(t, policylib.Snapshot{Namespaces: []*corev1.Namespace{tNS("a", tLabels("team", "x"))}, Pods: []*corev1.Pod{p}})
	up := p.DeepCopy()
	up.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if !e.HoldsPod(up) {
		t.Error("HoldsPod is false for a status update")
	}
	for what, change := range map[string]func(*corev1.Pod){
		"labels":    func(p *corev1.Pod) { p.Labels["tier"] = "front" },
		"address":   func(p *corev1.Pod) { p.Status.PodIP, p.Status.PodIPs = "10.0.0.2", nil },
		"port":      func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 8080 },
		"node":      func(p *corev1.Pod) { p.Spec.NodeName = "node2" },
		"host":      func(p *corev1.Pod) { p.Spec.HostNetwork = true },
		"finished":  func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded },
		"invalid":   func(p *corev1.Pod) { p.Status.PodIP = "not-an-address" },
		"unknown":   func(p *corev1.Pod) { p.Name = "other" },
		"namespace": func(p *corev1.Pod) { p.Namespace = "b" },
	} {
		c := p.DeepCopy()
		change(c)
		if e.HoldsPod(c) {
			t.Errorf("HoldsPod is true after a change of %s", what)
		}
	}
	if !e.HoldsNamespace(tNS("a", tLabels("team", "x", policylib.NamespaceNameLabel, "wrong"))) {
		t.Error("HoldsNamespace is false for the same labels (the name label is always the name)")
	}
	if e.HoldsNamespace(tNS("a", tLabels("team", "y"))) {
		t.Error("HoldsNamespace is true for new labels")
	}
	if !e.HoldsNamespace(tNS("unknown", nil)) || e.HoldsNamespace(tNS("unknown", tLabels("team", "x"))) {
		t.Error("HoldsNamespace: an unknown namespace should have its name label only")
	}
}

// TestDifferentialDependents checks on random clusters that the answers
// never leave out a policy whose rules change: for each random change of a
// pod (relabel, new addresses or ports, onto or off the host network,
// deleted, finished) or of a namespace's labels, and each policy Q, the
// PodRules of the pods Q isolates, in an engine holding Q alone (so they
// are Q's part of those pods' rules), change only if Q is named before or
// after the change. Between checks, random changes of every kind keep the
// engine's index in motion.
func TestDifferentialDependents(t *testing.T) {
	seeds := 200
	if testing.Short() {
		seeds = 30
	}
	for seed := int64(2000); seed < int64(2000+seeds); seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			genCheckDependents(t, genNewCluster(seed), 40)
		})
	}
}

func genCheckDependents(t *testing.T, g *genCluster, steps int) {
	opt := policylib.WithIPBlockMatchesPods(g.seed%4 != 3)
	e, err := policylib.Build(g.snap, opt)
	if err != nil {
		t.Fatalf("seed %d: Build: %v", g.seed, err)
	}
	var named, changed int
	for step := range steps {
		what := g.mutate(t, e)
		// One change to check, applied to e and to each single-policy
		// engine by apply, and to the snapshot by commit.
		var apply func(*policylib.Engine)
		var commit func()
		var deps func(*policylib.Engine) []types.NamespacedName
		var changedPod types.NamespacedName
		s := &g.snap
		if op := g.r.IntN(6); op < 5 && len(s.Pods) > 0 {
			i := g.r.IntN(len(s.Pods))
			p := s.Pods[i].DeepCopy()
			changedPod = types.NamespacedName{Namespace: p.Namespace, Name: p.Name}
			deps = func(e *policylib.Engine) []types.NamespacedName {
				return e.PoliciesDependingOnPod(p.Namespace, p.Name)
			}
			switch op {
			case 0:
				p.Labels = g.labels()
			case 1:
				g.placePod(p, []int{genPodPending, genPodDualStack, genPodDualStack6, genPodIPv6, genPodIPv4}[g.r.IntN(5)])
			case 2:
				g.placePod(p, g.r.IntN(20)) // maybe onto the host network, maybe finished
			case 3:
				p.Labels = g.labels()
				g.placePod(p, genPodIPv4)
			}
			if op == 4 {
				what += fmt.Sprintf("; checked: DeletePod %s", changedPod)
				apply = func(e *policylib.Engine) { e.DeletePod(p.Namespace, p.Name) }
				commit = func() { s.Pods = slices.Delete(s.Pods, i, i+1) }
			} else {
				what += fmt.Sprintf("; checked: SetPod %s %v hostNetwork=%t phase=%s ips=%v", changedPod, p.Labels, p.Spec.HostNetwork, p.Status.Phase, p.Status.PodIPs)
				apply = func(e *policylib.Engine) {
					if err := e.SetPod(p); err != nil {
						t.Fatalf("seed %d: SetPod: %v", g.seed, err)
					}
				}
				commit = func() { s.Pods[i] = p }
			}
		} else {
			ns := g.namespace(g.pick(genNamespaceNames))
			deps = func(e *policylib.Engine) []types.NamespacedName { return e.PoliciesDependingOnNamespace(ns.Name) }
			i := slices.IndexFunc(s.Namespaces, func(x *corev1.Namespace) bool { return x.Name == ns.Name })
			if i >= 0 && g.r.IntN(3) == 0 {
				what += "; checked: DeleteNamespace " + ns.Name
				apply = func(e *policylib.Engine) { e.DeleteNamespace(ns.Name) }
				commit = func() { s.Namespaces = slices.Delete(s.Namespaces, i, i+1) }
			} else {
				what += fmt.Sprintf("; checked: SetNamespace %s %v", ns.Name, ns.Labels)
				apply = func(e *policylib.Engine) { e.SetNamespace(ns) }
				commit = func() {
					if i < 0 {
						s.Namespaces = append(s.Namespaces, ns)
					} else {
						s.Namespaces[i] = ns
					}
				}
			}
		}
		before := deps(e)
		apply(e)
		after := deps(e)
		for _, l := range [][]types.NamespacedName{before, after} {
			if !slices.IsSortedFunc(l, compareNames) || len(slices.CompactFunc(slices.Clone(l), func(a, b types.NamespacedName) bool { return a == b })) != len(l) {
				t.Fatalf("seed %d step %d (%s): %v is not sorted and without repeats", g.seed, step, what, l)
			}
		}
		for _, np := range s.Policies {
			q := types.NamespacedName{Namespace: np.Namespace, Name: np.Name}
			single := *s
			single.Policies = []*networkingv1.NetworkPolicy{np}
			eq, err := policylib.Build(single, opt)
			if err != nil {
				t.Fatalf("seed %d: Build: %v", g.seed, err)
			}
			old := isolatedRules(t, eq, &single)
			apply(eq)
			listed := slices.Contains(before, q) || slices.Contains(after, q)
			if listed {
				named++
			}
			for k, r := range old {
				if k == changedPod {
					continue // its own rules change with it; not what this asks
				}
				now, err := eq.PodRules(k.Namespace, k.Name)
				if err != nil {
					t.Fatal(err)
				}
				if sameRules(r, now) {
					continue
				}
				if !listed {
					t.Fatalf("seed %d step %d: %s's rules for %s changed, but it is neither in %v before nor in %v after\nchanges: %s\nbefore: %+v\nafter:  %+v\n%s",
						g.seed, step, q, k, before, after, what, r, now, genDump(s))
				}
				changed++
				break
			}
		}
		commit()
	}
	t.Logf("seed %d: %d policies named, %d of them changed", g.seed, named, changed)
}

func compareNames(a, b types.NamespacedName) int {
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// isolatedRules returns the rules of every pod the engine isolates.
func isolatedRules(t *testing.T, e *policylib.Engine, s *policylib.Snapshot) map[types.NamespacedName]policylib.PodRules {
	out := map[types.NamespacedName]policylib.PodRules{}
	for _, k := range genLivePods(s) {
		r, err := e.PodRules(k.Namespace, k.Name)
		if err != nil {
			t.Fatal(err)
		}
		if r.Ingress.Isolated || r.Egress.Isolated {
			out[k] = r
		}
	}
	return out
}

func sameRules(a, b policylib.PodRules) bool {
	same := func(x, y policylib.DirectionRules) bool {
		return x.Isolated == y.Isolated && slices.Equal(x.Policies, y.Policies) &&
			slices.EqualFunc(x.Allows, y.Allows, func(p, q policylib.Allow) bool {
				return p.AnyPeer == q.AnyPeer && p.Peers.Equal(q.Peers) && p.AnyPort == q.AnyPort &&
					slices.Equal(p.Ports, q.Ports) && slices.Equal(p.Rules, q.Rules)
			})
	}
	return same(a.Ingress, b.Ingress) && same(a.Egress, b.Egress)
}

// A dataplane that keeps each pod's PodRules asks, around a change, which
// policies' rules it can alter, and recomputes only the pods they isolate.
func ExampleEngine_PoliciesDependingOnPod() {
	engine, err := policylib.Build(exampleCluster())
	if err != nil {
		panic(err)
	}
	// The client is about to lose its access label.
	before := engine.PoliciesDependingOnPod("shop", "client")
	client := exampleCluster().Pods[1]
	client.Labels = nil
	if err := engine.SetPod(client); err != nil {
		panic(err)
	}
	after := engine.PoliciesDependingOnPod("shop", "client")
	fmt.Println("before:", before)
	fmt.Println("after:", after)
	// Output:
	// before: [shop/web-access]
	// after: []
}

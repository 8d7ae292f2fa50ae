package agent_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podwall/podwall/enforcer"
	"github.com/podwall/podwall/enforcer/agent"
	"github.com/podwall/podwall/policylib"
)

// The agent recompiles only the local pods a change may affect, as the
// engine's PoliciesDependingOnPod and PoliciesDependingOnNamespace tell
// (policylib's own tests check those against PodRules). These tests feed
// random changes of every kind and check, after each, that what the agent
// applied is what compiling every local pod afresh gives.
func TestIncrementalMatchesFresh(t *testing.T) {
	for _, matchPods := range []bool{true, false} {
		for seed := range uint64(4) {
			t.Run(fmt.Sprintf("ipBlockMatchesPods=%v/seed=%d", matchPods, seed), func(t *testing.T) {
				t.Parallel()
				runRandomChanges(t, seed, matchPods, 150)
			})
		}
	}
}

// randCluster is the test's own record of what it fed.
type randCluster struct {
	rng  *rand.Rand
	pods map[types.NamespacedName]*corev1.Pod
	node *corev1.Node
}

var (
	randNamespaces = []string{"ns0", "ns1", "ns2", "ns3"}
	randNodes      = []string{"k8s-node2", "k8s-node2", "k8s-node1"}
)

func (c *randCluster) pick(xs ...string) string { return xs[c.rng.IntN(len(xs))] }

func (c *randCluster) namespace(name string) *corev1.Namespace {
	l := map[string]string{"team": c.pick("a", "b", "c")}
	if c.rng.IntN(2) == 0 {
		l["env"] = c.pick("prod", "dev")
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

func (c *randCluster) pod(ns, name string) *corev1.Pod {
	l := map[string]string{"app": c.pick("a0", "a1", "a2")}
	if c.rng.IntN(3) > 0 {
		l["tier"] = c.pick("web", "api")
	}
	n := c.rng.IntN(40)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l},
		Spec: corev1.PodSpec{NodeName: c.pick(randNodes...), Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: int32(8080 + c.rng.IntN(2)), Protocol: corev1.ProtocolTCP},
		}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: fmt.Sprintf("10.1.%d.%d", n/20, n%20+1)},
	}
	switch c.rng.IntN(8) {
	case 0:
		p.Status.PodIP = "" // not started yet
	case 1:
		p.Status.PodIPs = []corev1.PodIP{{IP: p.Status.PodIP}, {IP: fmt.Sprintf("fd00::%x", n+1)}}
	case 2:
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP})
	}
	return p
}

func (c *randCluster) peer() networkingv1.NetworkPolicyPeer {
	sel := func() *metav1.LabelSelector {
		switch c.rng.IntN(4) {
		case 0:
			return &metav1.LabelSelector{}
		case 1:
			return &metav1.LabelSelector{MatchLabels: map[string]string{"tier": c.pick("web", "api")}}
		case 2:
			return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpDoesNotExist}}}
		}
		return &metav1.LabelSelector{MatchLabels: map[string]string{"app": c.pick("a0", "a1", "a2")}}
	}
	nsSel := func() *metav1.LabelSelector {
		switch c.rng.IntN(3) {
		case 0:
			return &metav1.LabelSelector{MatchLabels: map[string]string{"team": c.pick("a", "b", "c")}}
		case 1:
			return &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}
		}
		return &metav1.LabelSelector{MatchLabels: map[string]string{policylib.NamespaceNameLabel: c.pick(randNamespaces...)}}
	}
	switch c.rng.IntN(5) {
	case 0:
		return networkingv1.NetworkPolicyPeer{PodSelector: sel()}
	case 1:
		return networkingv1.NetworkPolicyPeer{NamespaceSelector: nsSel()}
	case 2:
		return networkingv1.NetworkPolicyPeer{NamespaceSelector: nsSel(), PodSelector: sel()}
	case 3:
		return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.1.0.0/23", Except: []string{"10.1.0.0/28"}}}
	}
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: fmt.Sprintf("10.1.%d.0/24", c.rng.IntN(2))}}
}

func (c *randCluster) ports() []networkingv1.NetworkPolicyPort {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	switch c.rng.IntN(4) {
	case 0:
		return nil
	case 1:
		return []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &intstr.IntOrString{Type: intstr.String, StrVal: "http"}}}
	case 2:
		return []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &intstr.IntOrString{Type: intstr.String, StrVal: "dns"}}}
	}
	end := int32(8100)
	return []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &intstr.IntOrString{IntVal: 8080}, EndPort: &end}}
}

func (c *randCluster) policy(ns, name string) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if c.rng.IntN(3) > 0 {
		np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app": c.pick("a0", "a1", "a2")}}
	}
	peers := func() []networkingv1.NetworkPolicyPeer {
		var ps []networkingv1.NetworkPolicyPeer
		for range c.rng.IntN(3) {
			ps = append(ps, c.peer())
		}
		return ps
	}
	for range c.rng.IntN(3) {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: peers(), Ports: c.ports()})
	}
	if c.rng.IntN(2) == 0 {
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
		for range c.rng.IntN(3) {
			np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: peers(), Ports: c.ports()})
		}
	}
	return np
}

func (c *randCluster) nodeObj(addr string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "k8s-node2"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: addr}}}}
}

// local lists the pods the agent should compile.
func (c *randCluster) local() []types.NamespacedName {
	var out []types.NamespacedName
	for k, p := range c.pods {
		if p.Spec.NodeName == "k8s-node2" {
			out = append(out, k)
		}
	}
	return out
}

func runRandomChanges(t *testing.T, seed uint64, matchPods bool, steps int) {
	c := &randCluster{rng: rand.New(rand.NewPCG(seed, 7)), pods: map[types.NamespacedName]*corev1.Pod{}}
	src := &chanSource{name: "random", fn: make(chan func(agent.Sink))}
	var recompiled, syncs int
	reports := make(chan agent.SyncReport, 1000)
	s := start(t, agent.Options{
		EngineOptions: []policylib.Option{policylib.WithIPBlockMatchesPods(matchPods)},
		ResyncPeriod:  -1,
		OnSync: func(r agent.SyncReport) {
			select {
			case reports <- r:
			default:
			}
		},
	}, src)

	var policies []types.NamespacedName
	src.do(func(sk agent.Sink) {
		for _, ns := range randNamespaces {
			sk.SetNamespace(c.namespace(ns))
		}
		for i := range 24 {
			p := c.pod(c.pick(randNamespaces...), fmt.Sprintf("p%d", i))
			c.pods[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}] = p
			sk.SetPod(p)
		}
		for i := range 8 {
			np := c.policy(c.pick(randNamespaces...), fmt.Sprintf("np%d", i))
			policies = append(policies, types.NamespacedName{Namespace: np.Namespace, Name: np.Name})
			sk.SetPolicy(np)
		}
		c.node = c.nodeObj("192.168.2.102")
		sk.SetNode(c.node)
		sk.Synced()
	})
	check := func(step int, what string) {
		t.Helper()
		s.waitGen(t, s.a.Status().Generation)
		got := s.app.last()
		want, err := enforcer.Compile(s.a.Engine(), c.local(), enforcer.Options{NodeAddrs: got.NodeAddrs})
		if err != nil {
			t.Fatal(err)
		}
		if g, w := got.Render(), want.Render(); g != w {
			t.Fatalf("step %d (%s): the agent applied\n%s\nbut compiling afresh gives\n%s", step, what, g, w)
		}
		for len(reports) > 0 {
			r := <-reports
			if !r.Full {
				recompiled += r.Recompiled
				syncs++
			}
		}
	}
	check(0, "initial state")

	keys := func() []types.NamespacedName {
		var ks []types.NamespacedName
		for k := range c.pods {
			ks = append(ks, k)
		}
		return ks
	}
	for step := 1; step <= steps; step++ {
		var what string
		src.do(func(sk agent.Sink) {
			switch r := c.rng.IntN(20); {
			case r < 8: // a pod changes: labels, address, ports, node
				ks := keys()
				k := ks[c.rng.IntN(len(ks))]
				p := c.pod(k.Namespace, k.Name)
				if c.rng.IntN(2) == 0 { // a smaller change: keep all but one field
					old := c.pods[k].DeepCopy()
					switch c.rng.IntN(3) {
					case 0:
						old.Labels = p.Labels
					case 1:
						old.Status = p.Status
					default:
						old.Spec.Containers = p.Spec.Containers
					}
					p = old
				}
				c.pods[k] = p
				sk.SetPod(p)
				what = "set pod " + k.String()
			case r < 10: // a new pod
				p := c.pod(c.pick(randNamespaces...), fmt.Sprintf("new%d", step))
				c.pods[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}] = p
				sk.SetPod(p)
				what = "add pod " + p.Namespace + "/" + p.Name
			case r < 12: // a pod goes, or finishes
				ks := keys()
				k := ks[c.rng.IntN(len(ks))]
				if c.rng.IntN(2) == 0 {
					sk.DeletePod(k.Namespace, k.Name)
				} else {
					p := c.pods[k].DeepCopy()
					p.Status.Phase = corev1.PodSucceeded
					sk.SetPod(p)
				}
				delete(c.pods, k)
				what = "delete pod " + k.String()
			case r < 14: // a namespace is relabelled or deleted
				ns := c.pick(randNamespaces...)
				if c.rng.IntN(4) == 0 {
					sk.DeleteNamespace(ns)
					what = "delete namespace " + ns
				} else {
					sk.SetNamespace(c.namespace(ns))
					what = "relabel namespace " + ns
				}
			case r < 18: // a policy changes, comes or goes
				i := c.rng.IntN(len(policies) + 1)
				if i == len(policies) {
					np := c.policy(c.pick(randNamespaces...), fmt.Sprintf("np-new%d", step))
					policies = append(policies, types.NamespacedName{Namespace: np.Namespace, Name: np.Name})
					sk.SetPolicy(np)
					what = "add policy"
				} else if c.rng.IntN(3) == 0 {
					sk.DeletePolicy(policies[i].Namespace, policies[i].Name)
					what = "delete policy " + policies[i].String()
				} else {
					sk.SetPolicy(c.policy(policies[i].Namespace, policies[i].Name))
					what = "change policy " + policies[i].String()
				}
			case r < 19: // the node's address changes
				sk.SetNode(c.nodeObj(c.pick("192.168.2.102", "192.168.2.103")))
				what = "set node"
			default: // another node changes
				sk.SetNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "k8s-node1"}})
				what = "set other node"
			}
		})
		check(step, what)
	}
	local := len(c.local())
	t.Logf("%d incremental syncs recompiled %d local pods in all (about %d local pods)", syncs, recompiled, local)
	if syncs > 10 && recompiled >= syncs*local {
		t.Errorf("incremental syncs recompiled every local pod: %d pods over %d syncs", recompiled, syncs)
	}
}

// An isolated change is synced at once, not after the debounce period, and
// changes that cannot alter the node's ruleset cause no sync at all.
func TestLeadingEdgeAndIrrelevantChanges(t *testing.T) {
	const debounce = time.Second
	src := &chanSource{name: "a", synced: true, fn: make(chan func(agent.Sink))}
	reports := make(chan agent.SyncReport, 100)
	s := start(t, agent.Options{Debounce: debounce, MaxDelay: time.Hour, OnSync: func(r agent.SyncReport) { reports <- r }}, src)
	s.waitGen(t, 0)
	<-reports
	time.Sleep(debounce + 100*time.Millisecond) // idle

	web := pod("web", "k8s-node2", "10.0.0.1", map[string]string{"app": "web"})
	var gen uint64
	start := time.Now()
	src.do(func(sk agent.Sink) {
		sk.SetPolicy(&networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "client"}}}}}},
			},
		})
		sk.SetPod(web)
		gen = sk.Generation()
	})
	s.waitGen(t, gen)
	if d := time.Since(start); d >= debounce {
		t.Errorf("an isolated change took %v to reach the kernel: the debounce period (%v), not the leading edge", d, debounce)
	}
	<-reports // sent after WaitApplied returns

	src.do(func(sk agent.Sink) {
		// A status update, a pod elsewhere that no peer matches, one that
		// a peer matches but has no address yet, the namespace as the
		// engine has it already (its name label only), another node.
		up := web.DeepCopy()
		up.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		sk.SetPod(up)
		sk.SetPod(pod("db", "k8s-node1", "10.0.0.9", map[string]string{"role": "db"}))
		sk.SetPod(pod("starting", "k8s-node1", "", map[string]string{"role": "client"}))
		sk.SetNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default", Annotations: map[string]string{"a": "b"}}})
		sk.SetNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "k8s-node1"}})
		if g := sk.Generation(); g != gen {
			t.Errorf("generation went from %d to %d on changes that cannot alter the ruleset", gen, g)
		}
	})
	time.Sleep(50 * time.Millisecond)
	if n := len(reports); n != 0 {
		t.Errorf("%d syncs for changes that cannot alter the ruleset", n)
	}

	// A client elsewhere: only the web pod's rules change.
	src.do(func(sk agent.Sink) {
		sk.SetPod(pod("client", "k8s-node1", "10.0.0.7", map[string]string{"role": "client"}))
		gen = sk.Generation()
	})
	s.waitGen(t, gen)
	r := <-reports
	if r.Recompiled != 1 || !allowed(r.Ruleset, netip.MustParseAddr("10.0.0.7"), netip.MustParseAddr(web.Status.PodIP), policylib.TCP, 80) {
		t.Errorf("the client's sync recompiled %d pods, ruleset\n%s", r.Recompiled, r.Ruleset.Render())
	}
}

// A namespace relabel recompiles the local pods isolated by a policy whose
// namespaceSelector gains or loses the namespace's pods, and no other.
func TestNamespaceRelabel(t *testing.T) {
	src := &chanSource{name: "a", synced: true, fn: make(chan func(agent.Sink))}
	reports := make(chan agent.SyncReport, 100)
	s := start(t, agent.Options{OnSync: func(r agent.SyncReport) { reports <- r }}, src)
	fromTeam := func(name, team string) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": team}},
				}}}},
			},
		}
	}
	client := pod("client", "k8s-node1", "10.0.1.1", nil)
	client.Namespace = "other"
	var gen uint64
	src.do(func(sk agent.Sink) {
		sk.SetNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other", Labels: map[string]string{"team": "x"}}})
		sk.SetPod(client)
		for _, name := range []string{"x", "y", "z"} {
			sk.SetPolicy(fromTeam(name, name))
			sk.SetPod(pod(name, "k8s-node2", "10.0.0."+map[string]string{"x": "1", "y": "2", "z": "3"}[name], map[string]string{"app": name}))
		}
		gen = sk.Generation()
	})
	s.waitGen(t, gen)

	// team x to y: the pods x and y; the same labels again: nothing.
	src.do(func(sk agent.Sink) {
		sk.SetNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other", Labels: map[string]string{"team": "y"}}})
		gen = sk.Generation()
	})
	s.waitGen(t, gen)
	if r := reportFor(t, reports, gen); r.Recompiled != 2 || !allowed(r.Ruleset, netip.MustParseAddr("10.0.1.1"), netip.MustParseAddr("10.0.0.2"), policylib.TCP, 80) ||
		allowed(r.Ruleset, netip.MustParseAddr("10.0.1.1"), netip.MustParseAddr("10.0.0.1"), policylib.TCP, 80) {
		t.Errorf("the relabel recompiled %d pods (want x and y), ruleset\n%s", r.Recompiled, r.Ruleset.Render())
	}
	src.do(func(sk agent.Sink) {
		sk.SetNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other", Labels: map[string]string{"team": "y"}, Annotations: map[string]string{"a": "b"}}})
		if g := sk.Generation(); g != gen {
			t.Errorf("generation went from %d to %d on a namespace update with the same labels", gen, g)
		}
	})
}

// reportFor returns the first report of a sync at generation gen or later,
// skipping those of earlier syncs: the set-up's changes may have taken more
// than one sync, and a report is sent after WaitApplied returns.
func reportFor(t *testing.T, reports <-chan agent.SyncReport, gen uint64) agent.SyncReport {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case r := <-reports:
			if r.Generation >= gen {
				return r
			}
		case <-timeout:
			t.Fatalf("no sync report for generation %d", gen)
		}
	}
}

package enforcer_test

// Builders and scenarios shared by the enforcer tests: the seed scenario,
// a sample of the upstream e2e model (namespaces x/y/z, pods a/b/c, servers
// on 80 and 81 over TCP and UDP) and a seeded random cluster generator.

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podwall/podwall/enforcer"
	"github.com/podwall/podwall/manifest"
	"github.com/podwall/podwall/policylib"
)

// scenario is a cluster whose pods all run on the node under test.
type scenario struct {
	name string
	snap policylib.Snapshot
	// node is the local node's name and nodeAddrs its addresses (the lab
	// puts them on the bridge); others are other nodes' addresses (lab hosts
	// on the bridge, reaching pods through the forward hook).
	nodeAddrs []netip.Addr
	others    []netip.Addr
	opts      enforcer.Options
}

func (s scenario) engine(t testing.TB) *policylib.Engine {
	t.Helper()
	e, err := policylib.Build(s.snap)
	if err != nil {
		t.Fatalf("%s: %v", s.name, err)
	}
	return e
}

func (s scenario) local() []types.NamespacedName {
	var out []types.NamespacedName
	for _, p := range s.snap.Pods {
		out = append(out, types.NamespacedName{Namespace: p.Namespace, Name: p.Name})
	}
	return out
}

func (s scenario) options() enforcer.Options {
	o := s.opts
	o.NodeAddrs = s.nodeAddrs
	return o
}

func (s scenario) compile(t testing.TB) (*policylib.Engine, *enforcer.Ruleset) {
	t.Helper()
	e := s.engine(t)
	rs, err := enforcer.Compile(e, s.local(), s.options())
	if err != nil {
		t.Fatalf("%s: %v", s.name, err)
	}
	return e, rs
}

// ---- seed ----

var (
	seedNode1 = netip.MustParseAddr("192.168.2.101")
	seedOther = []netip.Addr{netip.MustParseAddr("192.168.2.100"), netip.MustParseAddr("192.168.2.102")}
)

// seedStage is the seed cluster with the stage's policy file ("" for none).
func seedStage(t testing.TB, file string) scenario {
	t.Helper()
	paths := []string{"../examples/seed/cluster"}
	if file != "" {
		paths = append(paths, "../examples/seed/original/"+file)
	}
	set, err := manifest.Load(paths...)
	if err != nil {
		t.Fatal(err)
	}
	pods, err := set.AllPods()
	if err != nil {
		t.Fatal(err)
	}
	name := "seed-0"
	switch file {
	case "networkpolicy.yaml":
		name = "seed-1"
	case "networkpolicy-ipblock.yaml":
		name = "seed-2"
	}
	return scenario{
		name:      name,
		snap:      policylib.Snapshot{Nodes: set.Nodes, Pods: pods, Policies: set.NetworkPolicies, Services: set.Services},
		nodeAddrs: []netip.Addr{seedNode1},
		others:    seedOther,
	}
}

// ---- builders ----

func labels(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func namespace(name string, l map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

func pod(ns, name string, l map[string]string, addrs []netip.Addr, ports ...corev1.ContainerPort) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l},
		Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "c", Ports: ports}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for i, a := range addrs {
		if i == 0 {
			p.Status.PodIP = a.String()
		}
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: a.String()})
	}
	return p
}

func cport(name string, proto corev1.Protocol, port int32) corev1.ContainerPort {
	return corev1.ContainerPort{Name: name, Protocol: proto, ContainerPort: port}
}

func sel(kv ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: labels(kv...)}
}

func numPort(proto corev1.Protocol, port int32) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &intstr.IntOrString{IntVal: port}}
}

func rangePort(proto corev1.Protocol, first, last int32) networkingv1.NetworkPolicyPort {
	p := numPort(proto, first)
	p.EndPort = &last
	return p
}

func namedPort(proto corev1.Protocol, name string) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &intstr.IntOrString{Type: intstr.String, StrVal: name}}
}

func policy(ns, name string, podSel *metav1.LabelSelector, types []networkingv1.PolicyType) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: *podSel, PolicyTypes: types},
	}
}

var (
	ingressOnly = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	egressOnly  = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	bothTypes   = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
)

const (
	tcp = corev1.ProtocolTCP
	udp = corev1.ProtocolUDP
)

// ---- the upstream e2e model ----

var (
	e2eNamespaces = []string{"x", "y", "z"}
	e2ePods       = []string{"a", "b", "c"}
	e2eNode       = netip.MustParseAddr("172.18.0.1")
	e2eNode6      = netip.MustParseAddr("fd00:18::1")
	e2eOther      = netip.MustParseAddr("172.18.0.2")
)

func e2eAddrs(ns, p int) []netip.Addr {
	return []netip.Addr{
		netip.AddrFrom4([4]byte{10, 240, byte(ns), byte(p + 1)}),
		netip.MustParseAddr(fmt.Sprintf("fd00:240::%d:%d", ns, p+1)),
	}
}

func e2eAddr(ns, p int, v6 bool) netip.Addr {
	a := e2eAddrs(ns, p)
	if v6 {
		return a[1]
	}
	return a[0]
}

// e2eCluster is the model's namespaces and dual-stack pods, serving
// serve-80-tcp, serve-81-tcp, serve-80-udp and serve-81-udp.
func e2eCluster() policylib.Snapshot {
	var s policylib.Snapshot
	for i, ns := range e2eNamespaces {
		s.Namespaces = append(s.Namespaces, namespace(ns, labels("ns", ns)))
		for j, p := range e2ePods {
			s.Pods = append(s.Pods, pod(ns, p, labels("pod", p), e2eAddrs(i, j),
				cport("serve-80-tcp", tcp, 80), cport("serve-81-tcp", tcp, 81),
				cport("serve-80-udp", udp, 80), cport("serve-81-udp", udp, 81)))
		}
	}
	return s
}

func e2eScenario(name string, pols ...*networkingv1.NetworkPolicy) scenario {
	s := e2eCluster()
	s.Policies = pols
	return scenario{
		name:      name,
		snap:      s,
		nodeAddrs: []netip.Addr{e2eNode, e2eNode6},
		others:    []netip.Addr{e2eOther},
	}
}

func ingress(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyIngressRule {
	return networkingv1.NetworkPolicyIngressRule{From: peers, Ports: ports}
}

func egress(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyEgressRule {
	return networkingv1.NetworkPolicyEgressRule{To: peers, Ports: ports}
}

func peers(ps ...networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyPeer { return ps }

func podPeer(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: s}
}

func nsPeer(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: s}
}

func ipBlock(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func withIngress(p *networkingv1.NetworkPolicy, rs ...networkingv1.NetworkPolicyIngressRule) *networkingv1.NetworkPolicy {
	p.Spec.Ingress = rs
	return p
}

func withEgress(p *networkingv1.NetworkPolicy, rs ...networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
	p.Spec.Egress = rs
	return p
}

// e2eCases are the e2e-like shapes the golden, model and dataplane tests
// share.
func e2eCases() []scenario {
	return []scenario{
		e2eScenario("e2e-default-deny-ingress",
			policy("x", "deny-all", sel(), ingressOnly)),
		e2eScenario("e2e-ns-and-pod-selectors",
			withIngress(policy("x", "from-y", sel("pod", "a"), ingressOnly),
				ingress(peers(nsPeer(sel("ns", "y"))))),
			withIngress(policy("x", "from-b-and-z-c", sel("pod", "b"), ingressOnly),
				ingress(peers(podPeer(sel("pod", "a")))),
				ingress(peers(networkingv1.NetworkPolicyPeer{NamespaceSelector: sel("ns", "z"), PodSelector: sel("pod", "c")})))),
		e2eScenario("e2e-named-ports-and-ranges",
			withIngress(policy("x", "named", sel("pod", "a"), ingressOnly),
				ingress(nil, namedPort(tcp, "serve-81-tcp"), namedPort(udp, "serve-80-udp"))),
			withIngress(policy("y", "range", sel("pod", "b"), ingressOnly),
				ingress(peers(nsPeer(sel("ns", "x"))), rangePort(tcp, 80, 81)),
				ingress(peers(podPeer(sel())), numPort(udp, 81)))),
		e2eScenario("e2e-ipblock-except",
			withIngress(policy("x", "ipblock", sel("pod", "a"), ingressOnly),
				ingress(peers(
					ipBlock("10.240.0.0/16", e2eAddr(1, 1, false).String()+"/32", "10.240.2.0/24"),
					ipBlock("fd00:240::/64", "fd00:240::1:2/128"),
					ipBlock("172.18.0.0/24", "172.18.0.1/32"),
				)))),
		e2eScenario("e2e-egress",
			withEgress(policy("x", "egress-a", sel("pod", "a"), egressOnly),
				egress(peers(nsPeer(sel("ns", "y"))), numPort(tcp, 80)),
				egress(peers(podPeer(sel("pod", "c")), networkingv1.NetworkPolicyPeer{NamespaceSelector: sel(), PodSelector: sel("pod", "c")}), namedPort(udp, "serve-81-udp")),
				egress(peers(ipBlock("172.18.0.0/24")))),
			withIngress(withEgress(policy("z", "both", sel(), bothTypes),
				egress(peers(podPeer(sel()))),
			), ingress(peers(nsPeer(sel())), numPort(tcp, 81)))),
	}
}

// ---- random clusters ----

// randomScenario draws a small cluster (six pods in two namespaces, a few
// policies) from a seed. Everything it draws is valid.
func randomScenario(seed uint64) scenario {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	var s policylib.Snapshot
	nss := []string{"n0", "n1"}
	for _, ns := range nss {
		s.Namespaces = append(s.Namespaces, namespace(ns, labels("team", pick("t0", "t1"))))
	}
	for i := range 6 {
		ns := nss[i%2]
		http, dns := int32(80+rng.IntN(2)), int32(80+rng.IntN(2))
		s.Pods = append(s.Pods, pod(ns, fmt.Sprintf("p%d", i), labels("app", pick("a", "b", "c"), "tier", pick("1", "2")),
			[]netip.Addr{randAddr(i)}, cport("http", tcp, http), cport("dns", udp, dns)))
	}
	selector := func() *metav1.LabelSelector {
		switch rng.IntN(4) {
		case 0:
			return sel()
		case 1:
			return sel("app", pick("a", "b", "c"))
		case 2:
			return sel("tier", pick("1", "2"))
		}
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "app", Operator: metav1.LabelSelectorOpNotIn, Values: []string{pick("a", "b", "c")}}}}
	}
	peer := func() networkingv1.NetworkPolicyPeer {
		switch rng.IntN(5) {
		case 0:
			return podPeer(selector())
		case 1:
			return nsPeer(sel("team", pick("t0", "t1")))
		case 2:
			return networkingv1.NetworkPolicyPeer{NamespaceSelector: selector(), PodSelector: selector()}
		case 3:
			// A block over some pods, less one of them.
			return ipBlock("10.241.0.0/29", randAddr(rng.IntN(6)).String()+"/32")
		}
		return ipBlock(pick("10.241.0.0/30", "10.241.0.4/31", "172.19.0.0/24", "0.0.0.0/0"))
	}
	port := func() networkingv1.NetworkPolicyPort {
		switch rng.IntN(6) {
		case 0:
			return numPort(tcp, 80)
		case 1:
			return numPort(tcp, 81)
		case 2:
			return numPort(udp, int32(80+rng.IntN(2)))
		case 3:
			return rangePort(tcp, 80, 81)
		case 4:
			return namedPort(tcp, "http")
		}
		return namedPort(udp, "dns")
	}
	list := func(max int, fn func()) {
		for range rng.IntN(max + 1) {
			fn()
		}
	}
	for k := range 1 + rng.IntN(3) {
		types := [][]networkingv1.PolicyType{ingressOnly, egressOnly, bothTypes}[rng.IntN(3)]
		p := policy(nss[rng.IntN(2)], fmt.Sprintf("pol-%d", k), selector(), types)
		if slices.Contains(types, networkingv1.PolicyTypeIngress) {
			list(2, func() {
				var r networkingv1.NetworkPolicyIngressRule
				list(2, func() { r.From = append(r.From, peer()) })
				list(2, func() { r.Ports = append(r.Ports, port()) })
				p.Spec.Ingress = append(p.Spec.Ingress, r)
			})
		}
		if slices.Contains(types, networkingv1.PolicyTypeEgress) {
			list(2, func() {
				var r networkingv1.NetworkPolicyEgressRule
				list(2, func() { r.To = append(r.To, peer()) })
				list(2, func() { r.Ports = append(r.Ports, port()) })
				p.Spec.Egress = append(p.Spec.Egress, r)
			})
		}
		s.Policies = append(s.Policies, p)
	}
	return scenario{
		name:      fmt.Sprintf("random-%d", seed),
		snap:      s,
		nodeAddrs: []netip.Addr{randNode},
		others:    []netip.Addr{randOther},
	}
}

var (
	randNode  = netip.MustParseAddr("172.19.0.1")
	randOther = netip.MustParseAddr("172.19.0.2")
)

// podAddrs returns a pod's addresses from status.podIPs, or status.podIP.
func podAddrs(p *corev1.Pod) []netip.Addr {
	var out []netip.Addr
	for _, ip := range p.Status.PodIPs {
		out = append(out, netip.MustParseAddr(ip.IP))
	}
	if len(out) == 0 && p.Status.PodIP != "" {
		out = append(out, netip.MustParseAddr(p.Status.PodIP))
	}
	return out
}

func randAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 241, 0, byte(i)}) }

// endpointAddrs lists every address of the scenario the tests probe from
// and to: the pods', the local node's and the other hosts'.
func (s scenario) endpointAddrs() []netip.Addr {
	var out []netip.Addr
	for _, p := range s.snap.Pods {
		out = append(out, podAddrs(p)...)
	}
	out = append(out, s.nodeAddrs...)
	return append(out, s.others...)
}

// kernelProtocols are the probes a matrix makes: TCP and UDP on 80 and 81,
// and ICMP echo.
var kernelProbes = []struct {
	proto policylib.Protocol
	port  int32
}{
	{policylib.TCP, 80}, {policylib.TCP, 81}, {policylib.UDP, 80}, {policylib.UDP, 81}, {policylib.ICMP, 0},
}

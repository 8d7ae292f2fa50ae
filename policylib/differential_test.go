package policylib_test

// Differential tests: random clusters and policies, judged by the engine and
// by the reference evaluator in reference_test.go, which must agree on every
// flow. The incremental test also holds an engine fed one change at a time to
// a freshly built one, which is what catches stale indexes.
//
// Every failure names its seed; rerun one with, for example,
//
//	go test ./policylib/ -run 'TestDifferentialCluster/seed=17$'

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/podwall/podwall/policylib"
)

// ---- generator ----

var (
	genLabelKeys      = []string{"app", "tier", "env"}
	genLabelValues    = []string{"a", "b", "c"}
	genNamespaceNames = []string{"x", "y", "z", "w", "v", "u"}
	genPortNames      = []string{"http", "web", "dns", "metrics"}
	genPortNumbers    = []int32{80, 81, 8080}
	genSubnets4       = []netip.Prefix{
		netip.MustParsePrefix("10.0.1.0/24"),
		netip.MustParsePrefix("10.0.2.0/24"),
		netip.MustParsePrefix("10.0.3.0/24"),
	}
	genSubnets6 = []netip.Prefix{
		netip.MustParsePrefix("fd00:0:0:1::/64"),
		netip.MustParsePrefix("fd00:0:0:2::/64"),
	}
	// Fixed ipBlock CIDRs; the generator adds host prefixes of known
	// addresses to these.
	genCIDRs = []string{
		"0.0.0.0/0", "10.0.0.0/8", "10.0.0.0/16", "10.0.1.0/24", "10.0.2.0/24",
		"10.0.3.0/24", "10.0.1.0/25", "10.0.1.128/25", "10.0.2.0/23",
		"172.16.0.0/24", "192.168.0.0/16",
		"::/0", "fd00::/8", "fd00:0:0:1::/64", "fd00:0:0:2::/64", "fd00:0:0:ff::/64",
	}
	// The ports every comparison covers, as the upstream e2e matrices do.
	genPorts = []policylib.PortProtocol{
		{Port: 80, Protocol: policylib.TCP}, {Port: 81, Protocol: policylib.TCP}, {Port: 8080, Protocol: policylib.TCP},
		{Port: 80, Protocol: policylib.UDP}, {Port: 81, Protocol: policylib.UDP}, {Port: 8080, Protocol: policylib.UDP},
		{Port: 80, Protocol: policylib.SCTP}, {Port: 81, Protocol: policylib.SCTP}, {Port: 8080, Protocol: policylib.SCTP},
		{Protocol: policylib.ICMP},
	}
)

// genCluster is a generated snapshot plus the outside addresses flows are
// checked against. Its slices are the reference's view of the cluster and
// are kept in step with every change made to an engine.
type genCluster struct {
	seed      int64
	snap      policylib.Snapshot
	externals []netip.Addr
	retired   []netip.Addr // former pod addresses, now outside ones

	r       *rand.Rand
	used    map[netip.Addr]bool
	nextPod int
	nextPol int
}

func genNewCluster(seed int64) *genCluster {
	g := &genCluster{
		seed: seed,
		r:    rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15)),
		used: map[netip.Addr]bool{},
	}
	g.snap.Nodes = genNodes(g.r.IntN(2) + 1)
	for _, n := range g.snap.Nodes {
		for _, a := range n.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				g.used[ip] = true
			}
		}
	}
	names := slices.Clone(genNamespaceNames)
	g.r.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	names = names[:2+g.r.IntN(3)]
	for _, ns := range names {
		if g.r.IntN(10) != 0 { // sometimes only implied by its pods
			g.snap.Namespaces = append(g.snap.Namespaces, g.namespace(ns))
		}
		for range 2 + g.r.IntN(5) {
			g.snap.Pods = append(g.snap.Pods, g.pod(ns, g.podName()))
		}
	}
	// Outside addresses: unused ones in the pod subnets, and further away (pod
	// subnets end at host 250).
	for _, s := range []string{"10.0.1.251", "10.0.2.252", "10.9.9.9", "192.168.1.1", "8.8.8.8", "fd00:0:0:1::fffe", "2001:db8::1"} {
		if g.r.IntN(3) != 0 {
			g.externals = append(g.externals, netip.MustParseAddr(s))
		}
	}
	for range g.r.IntN(9) {
		g.snap.Policies = append(g.snap.Policies, g.policy(g.pick(names), g.policyName()))
	}
	return g
}

// genNodes returns nodes with fixed addresses; the second lists IPv6 first.
func genNodes(n int) []*corev1.Node {
	all := []*corev1.Node{
		{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeHostName, Address: "node-1"},
			{Type: corev1.NodeInternalIP, Address: "172.16.0.1"},
			{Type: corev1.NodeExternalIP, Address: "198.51.100.1"},
		}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "node-2"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "fd00:0:0:ff::2"},
			{Type: corev1.NodeInternalIP, Address: "172.16.0.2"},
		}}},
	}
	return all[:n]
}

func (g *genCluster) pick(s []string) string { return s[g.r.IntN(len(s))] }

func (g *genCluster) podName() string {
	g.nextPod++
	return fmt.Sprintf("pod-%d", g.nextPod)
}

func (g *genCluster) policyName() string {
	g.nextPol++
	return fmt.Sprintf("np-%d", g.nextPol)
}

func (g *genCluster) labels() map[string]string {
	l := map[string]string{}
	for _, k := range genLabelKeys {
		if g.r.IntN(2) == 0 {
			l[k] = g.pick(genLabelValues)
		}
	}
	return l
}

func (g *genCluster) namespace(name string) *corev1.Namespace {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: g.labels()}}
	if g.r.IntN(4) == 0 {
		// A wrong name label: the API server (and the engine) overwrite it.
		ns.Labels[policylib.NamespaceNameLabel] = g.pick(genNamespaceNames)
	}
	return ns
}

// addr returns an unused address in a random subnet of the family.
func (g *genCluster) addr(v6 bool) netip.Addr {
	for {
		var a netip.Addr
		if v6 {
			b := g.pick6().Addr().As16()
			b[14], b[15] = 0, byte(1+g.r.IntN(250))
			a = netip.AddrFrom16(b)
		} else {
			b := genSubnets4[g.r.IntN(len(genSubnets4))].Addr().As4()
			b[3] = byte(1 + g.r.IntN(250))
			a = netip.AddrFrom4(b)
		}
		if !g.used[a] {
			g.used[a] = true
			return a
		}
	}
}

func (g *genCluster) pick6() netip.Prefix { return genSubnets6[g.r.IntN(len(genSubnets6))] }

func (g *genCluster) pod(ns, name string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: g.labels()},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	g.placePod(p, g.r.IntN(20))
	return p
}

// Kinds of pod for placePod, which takes any int: values from genPodIPv4 up
// are IPv4 pods too, so a random kind below 20 is mostly IPv4.
const (
	genPodPending     = iota // not started yet: no address
	genPodHostNetwork        // the node's address
	genPodSucceeded          // finished: not there at all
	genPodDualStack          // IPv4 first
	genPodDualStack4         // IPv4 first
	genPodDualStack6         // IPv6 first
	genPodIPv6
	genPodIPv4
)

// placePod gives p a node, addresses and containers of the given kind,
// keeping its labels.
func (g *genCluster) placePod(p *corev1.Pod, kind int) {
	node := g.snap.Nodes[g.r.IntN(len(g.snap.Nodes))]
	p.Spec = corev1.PodSpec{NodeName: node.Name}
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning}
	var ips []netip.Addr
	switch kind {
	case genPodPending:
		p.Status.Phase = corev1.PodPending
	case genPodHostNetwork:
		p.Spec.HostNetwork = true
		for _, a := range node.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				ips = append(ips, netip.MustParseAddr(a.Address))
				break
			}
		}
	case genPodSucceeded:
		p.Status.Phase = corev1.PodSucceeded
		ips = append(ips, g.addr(false))
	case genPodDualStack, genPodDualStack4:
		ips = append(ips, g.addr(false), g.addr(true))
	case genPodDualStack6:
		ips = append(ips, g.addr(true), g.addr(false))
	case genPodIPv6:
		ips = append(ips, g.addr(true))
	default:
		ips = append(ips, g.addr(false))
	}
	for i, a := range ips {
		if i == 0 {
			p.Status.PodIP = a.String()
		}
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: a.String()})
	}
	taken := map[string]bool{} // port names are unique in a pod
	ports := func(n int) []corev1.ContainerPort {
		var out []corev1.ContainerPort
		for range n {
			cp := corev1.ContainerPort{ContainerPort: genPortNumbers[g.r.IntN(len(genPortNumbers))]}
			if name := g.pick(genPortNames); !taken[name] && g.r.IntN(5) != 0 {
				cp.Name, taken[name] = name, true
			}
			cp.Protocol = []corev1.Protocol{"", corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}[g.r.IntN(4)]
			out = append(out, cp)
		}
		return out
	}
	for c := range 1 + g.r.IntN(2) {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", c), Image: "busybox", Ports: ports(g.r.IntN(3))})
	}
	if g.r.IntN(4) == 0 {
		// An init container: a sidecar (restartPolicy Always) serves its
		// ports alongside the containers, a plain one has exited by then.
		init := corev1.Container{Name: "init", Image: "busybox", Ports: ports(1)}
		if g.r.IntN(2) == 0 {
			always := corev1.ContainerRestartPolicyAlways
			init.RestartPolicy = &always
		}
		p.Spec.InitContainers = append(p.Spec.InitContainers, init)
	}
}

// policy returns a random policy that passes validation.
func (g *genCluster) policy(ns, name string) *networkingv1.NetworkPolicy {
	for range 100 {
		np := g.tryPolicy(ns, name)
		if len(policylib.ValidatePolicy(np)) == 0 {
			return np
		}
	}
	panic("generator: 100 invalid policies in a row")
}

func (g *genCluster) tryPolicy(ns, name string) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	np.Spec.PodSelector = *g.selector(false)
	switch g.r.IntN(5) {
	case 0: // omitted
	case 1:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	case 2:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	case 3:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	case 4:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress, networkingv1.PolicyTypeIngress}
	}
	for range g.r.IntN(4) {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: g.peers(), Ports: g.ports()})
	}
	for range g.r.IntN(4) {
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: g.peers(), Ports: g.ports()})
	}
	return np
}

// selector returns a random valid selector; a quarter of them are empty.
func (g *genCluster) selector(forNamespaces bool) *metav1.LabelSelector {
	ls := &metav1.LabelSelector{}
	if g.r.IntN(4) == 0 {
		return ls
	}
	key := func() (string, []string) {
		if forNamespaces && g.r.IntN(2) == 0 {
			return policylib.NamespaceNameLabel, genNamespaceNames
		}
		return g.pick(genLabelKeys), genLabelValues
	}
	for range g.r.IntN(3) {
		k, vals := key()
		if ls.MatchLabels == nil {
			ls.MatchLabels = map[string]string{}
		}
		ls.MatchLabels[k] = g.pick(vals)
	}
	for range g.r.IntN(3) {
		k, vals := key()
		req := metav1.LabelSelectorRequirement{Key: k}
		switch g.r.IntN(4) {
		case 0:
			req.Operator = metav1.LabelSelectorOpIn
		case 1:
			req.Operator = metav1.LabelSelectorOpNotIn
		case 2:
			req.Operator = metav1.LabelSelectorOpExists
		case 3:
			req.Operator = metav1.LabelSelectorOpDoesNotExist
		}
		if req.Operator == metav1.LabelSelectorOpIn || req.Operator == metav1.LabelSelectorOpNotIn {
			for range 1 + g.r.IntN(2) {
				req.Values = append(req.Values, g.pick(vals))
			}
		}
		ls.MatchExpressions = append(ls.MatchExpressions, req)
	}
	return ls
}

// peers returns no peers (every peer) a fifth of the time.
func (g *genCluster) peers() []networkingv1.NetworkPolicyPeer {
	if g.r.IntN(5) == 0 {
		return nil
	}
	var out []networkingv1.NetworkPolicyPeer
	for range 1 + g.r.IntN(3) {
		var p networkingv1.NetworkPolicyPeer
		switch g.r.IntN(10) {
		case 0, 1:
			p.PodSelector = g.selector(false)
		case 2, 3:
			p.NamespaceSelector = g.selector(true)
		case 4, 5:
			p.PodSelector, p.NamespaceSelector = g.selector(false), g.selector(true)
		case 6:
			p.PodSelector = &metav1.LabelSelector{}
		case 7:
			p.NamespaceSelector = &metav1.LabelSelector{}
		default:
			p.IPBlock = g.ipBlock()
		}
		out = append(out, p)
	}
	return out
}

// knownAddrs are the addresses of pods, nodes and outside hosts, so that
// ipBlocks and their excepts land on something.
func (g *genCluster) knownAddrs() []netip.Addr {
	var out []netip.Addr
	for _, p := range g.snap.Pods {
		for _, a := range p.Status.PodIPs {
			out = append(out, netip.MustParseAddr(a.IP))
		}
	}
	for _, n := range g.snap.Nodes {
		for _, a := range n.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				out = append(out, ip)
			}
		}
	}
	return append(out, g.externals...)
}

func (g *genCluster) ipBlock() *networkingv1.IPBlock {
	known := g.knownAddrs()
	var cidr netip.Prefix
	if len(known) > 0 && g.r.IntN(4) == 0 {
		a := known[g.r.IntN(len(known))]
		cidr = netip.PrefixFrom(a, a.BitLen())
	} else {
		cidr = netip.MustParsePrefix(g.pick(genCIDRs))
	}
	b := &networkingv1.IPBlock{CIDR: cidr.String()}
	if cidr.Bits() == cidr.Addr().BitLen() {
		return b
	}
	var inside []netip.Addr
	for _, a := range known {
		if cidr.Contains(a) {
			inside = append(inside, a)
		}
	}
	for range g.r.IntN(3) {
		var a netip.Addr
		if len(inside) > 0 && g.r.IntN(4) != 0 {
			a = inside[g.r.IntN(len(inside))]
		} else {
			a = g.randomAddrIn(cidr)
		}
		bits := cidr.Bits() + 1 + g.r.IntN(a.BitLen()-cidr.Bits())
		if g.r.IntN(2) == 0 {
			// Favour short excepts that cut out whole subnets.
			bits = min(bits, max(cidr.Bits()+1, a.BitLen()-8-g.r.IntN(8)))
		}
		ex := netip.PrefixFrom(a, bits).Masked()
		b.Except = append(b.Except, ex.String())
	}
	return b
}

func (g *genCluster) randomAddrIn(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		if g.r.IntN(2) == 0 {
			b[i/8] |= 0x80 >> (i % 8)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// ports returns no ports (every port, ICMP too) a quarter of the time.
func (g *genCluster) ports() []networkingv1.NetworkPolicyPort {
	if g.r.IntN(4) == 0 {
		return nil
	}
	var out []networkingv1.NetworkPolicyPort
	for range 1 + g.r.IntN(3) {
		var p networkingv1.NetworkPolicyPort
		if i := g.r.IntN(5); i > 0 {
			proto := []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}[i-1]
			p.Protocol = &proto
		}
		switch g.r.IntN(5) {
		case 0: // numeric
			n := append(slices.Clone(genPortNumbers), 443)[g.r.IntN(len(genPortNumbers)+1)]
			v := intstr.FromInt32(n)
			p.Port = &v
		case 1: // named, sometimes a name no pod has
			v := intstr.FromString(g.pick(append(slices.Clone(genPortNames), "nope")))
			p.Port = &v
		case 2: // range
			lo := []int32{1, 80, 81, 8000}[g.r.IntN(4)]
			hi := []int32{80, 81, 8080, 65535}[g.r.IntN(4)]
			if hi < lo {
				lo, hi = hi, lo
			}
			v := intstr.FromInt32(lo)
			p.Port, p.EndPort = &v, &hi
		case 3: // protocol only
		case 4: // a single-port range
			n := genPortNumbers[g.r.IntN(len(genPortNumbers))]
			v := intstr.FromInt32(n)
			p.Port, p.EndPort = &v, &n
		}
		out = append(out, p)
	}
	return out
}

// invalidPolicy returns a copy of np that the API server would reject.
func (g *genCluster) invalidPolicy(np *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
	bad := np.DeepCopy()
	switch g.r.IntN(4) {
	case 0:
		bad.Spec.Ingress = append(bad.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{
			From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"192.168.0.0/24"}}}},
		})
	case 1:
		bad.Spec.PodSelector.MatchExpressions = append(bad.Spec.PodSelector.MatchExpressions,
			metav1.LabelSelectorRequirement{Key: "app", Operator: metav1.LabelSelectorOpIn})
	case 2:
		end := int32(80)
		bad.Spec.Egress = append(bad.Spec.Egress, networkingv1.NetworkPolicyEgressRule{
			Ports: []networkingv1.NetworkPolicyPort{{EndPort: &end}},
		})
	case 3:
		bad.Spec.PolicyTypes = []networkingv1.PolicyType{"Sideways"}
	}
	return bad
}

// ---- comparisons ----

// genLivePods returns the keys of the pods that exist, sorted as Matrix
// sorts them.
func genLivePods(s *policylib.Snapshot) []types.NamespacedName {
	var out []types.NamespacedName
	for _, p := range s.Pods {
		if refPodExists(p) {
			out = append(out, types.NamespacedName{Namespace: p.Namespace, Name: p.Name})
		}
	}
	slices.SortFunc(out, func(a, b types.NamespacedName) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// genDump renders the cluster for a failure message.
func genDump(s *policylib.Snapshot) string {
	var b strings.Builder
	b.WriteString("namespaces:\n")
	for _, ns := range s.Namespaces {
		fmt.Fprintf(&b, "  %s %v\n", ns.Name, ns.Labels)
	}
	b.WriteString("nodes:\n")
	for _, n := range s.Nodes {
		fmt.Fprintf(&b, "  %s %v\n", n.Name, n.Status.Addresses)
	}
	b.WriteString("pods:\n")
	for _, p := range s.Pods {
		var ports []string
		for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			for _, cp := range c.Ports {
				ports = append(ports, fmt.Sprintf("%s:%s=%s/%d", c.Name, cp.Name, cp.Protocol, cp.ContainerPort))
			}
		}
		fmt.Fprintf(&b, "  %s/%s labels=%v ips=%v phase=%s hostNetwork=%t ports=%v\n",
			p.Namespace, p.Name, p.Labels, p.Status.PodIPs, p.Status.Phase, p.Spec.HostNetwork, ports)
	}
	b.WriteString("policies:\n")
	for _, np := range s.Policies {
		y, err := yaml.Marshal(np)
		if err != nil {
			panic(err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.String()
}

func genExplain(e *policylib.Engine, f policylib.Flow) string {
	x, err := e.Explain(f)
	if err != nil {
		return "explain: " + err.Error()
	}
	return x.String()
}

// genCheckMatrix compares the engine's full matrix with the reference.
func genCheckMatrix(t *testing.T, e *policylib.Engine, g *genCluster, ipBlockMatchesPods bool, context string) *policylib.Matrix {
	t.Helper()
	s := &g.snap
	m, err := e.Matrix(nil, genPorts)
	if err != nil {
		t.Fatalf("seed %d%s: Matrix: %v", g.seed, context, err)
	}
	if want := genLivePods(s); !slices.Equal(m.Pods, want) {
		t.Fatalf("seed %d%s: Matrix pods\n got %v\nwant %v\n%s", g.seed, context, m.Pods, want, genDump(s))
	}
	for k, pp := range m.Ports {
		for i, from := range m.Pods {
			for j, to := range m.Pods {
				f := policylib.Flow{
					From: policylib.PodEndpoint(from.Namespace, from.Name), To: policylib.PodEndpoint(to.Namespace, to.Name),
					Protocol: pp.Protocol, Port: pp.Port,
				}
				egress, ingress, _ := refVerdicts(s, ipBlockMatchesPods, f.From, f.To, f.Protocol, f.Port)
				if got := m.Allowed(i, j, k); got != (egress && ingress) {
					t.Fatalf("seed %d%s (ipBlockMatchesPods=%t): Matrix says %s allowed=%t, reference says egress=%t ingress=%t\nengine: %s\n%s",
						g.seed, context, ipBlockMatchesPods, f, got, egress, ingress, genExplain(e, f), genDump(s))
				}
			}
		}
	}
	return m
}

// genCheckFlow compares one Decide with the reference, direction by direction.
func genCheckFlow(t *testing.T, e *policylib.Engine, g *genCluster, ipBlockMatchesPods bool, context string, f policylib.Flow) {
	t.Helper()
	egress, ingress, ok := refVerdicts(&g.snap, ipBlockMatchesPods, f.From, f.To, f.Protocol, f.Port)
	d, err := e.Decide(f)
	if !ok {
		if !errors.Is(err, policylib.ErrUnknownEndpoint) {
			t.Fatalf("seed %d%s: Decide(%s) = %+v, %v; want ErrUnknownEndpoint\n%s", g.seed, context, f, d, err, genDump(&g.snap))
		}
		return
	}
	if err != nil {
		t.Fatalf("seed %d%s: Decide(%s): %v\n%s", g.seed, context, f, err, genDump(&g.snap))
	}
	if d.Allowed != (egress && ingress) || d.Egress.Allowed() != egress || d.Ingress.Allowed() != ingress {
		t.Fatalf("seed %d%s (ipBlockMatchesPods=%t): Decide(%s) = allowed %t (egress %s, ingress %s), reference says egress=%t ingress=%t\nengine: %s\n%s",
			g.seed, context, ipBlockMatchesPods, f, d.Allowed, d.Egress.Outcome, d.Ingress.Outcome, egress, ingress, genExplain(e, f), genDump(&g.snap))
	}
}

// genCheckDecide compares Decide with the reference for flows between pods
// (when podPairs), from nodes and their addresses to pods, from pods to
// outside addresses, and between pods named by address, plus pods that do not
// exist.
func genCheckDecide(t *testing.T, e *policylib.Engine, g *genCluster, ipBlockMatchesPods, podPairs bool, context string) {
	t.Helper()
	s := &g.snap
	var pods, gone []policylib.Endpoint
	var podAddrs []netip.Addr
	for _, p := range s.Pods {
		ep := policylib.PodEndpoint(p.Namespace, p.Name)
		if !refPodExists(p) {
			gone = append(gone, ep)
			continue
		}
		pods = append(pods, ep)
		if !p.Spec.HostNetwork {
			for _, a := range p.Status.PodIPs {
				podAddrs = append(podAddrs, netip.MustParseAddr(a.IP))
			}
		}
	}
	var sources []policylib.Endpoint
	for _, n := range s.Nodes {
		sources = append(sources, policylib.NodeEndpoint(n.Name))
		for _, a := range n.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				sources = append(sources, policylib.AddrEndpoint(ip))
			}
		}
	}
	var dests []policylib.Endpoint
	for _, a := range g.externals {
		dests = append(dests, policylib.AddrEndpoint(a))
	}
	for _, a := range g.retired[max(0, len(g.retired)-4):] {
		sources = append(sources, policylib.AddrEndpoint(a))
		dests = append(dests, policylib.AddrEndpoint(a))
	}
	// The matrix covers every port; here two random ports per pair keep the
	// slow reference affordable.
	flow := func(from, to policylib.Endpoint) {
		for range 2 {
			pp := genPorts[g.r.IntN(len(genPorts))]
			genCheckFlow(t, e, g, ipBlockMatchesPods, context, policylib.Flow{From: from, To: to, Protocol: pp.Protocol, Port: pp.Port})
		}
	}
	for _, p := range pods {
		for _, src := range sources {
			flow(src, p)
		}
		for _, dst := range dests {
			flow(p, dst)
		}
		if podPairs {
			for _, q := range pods {
				flow(p, q)
			}
		}
		for _, q := range gone {
			flow(p, q)
		}
	}
	// Pods named by one of their addresses, both ways.
	for range min(len(podAddrs)*len(pods), 16) {
		a := policylib.AddrEndpoint(podAddrs[g.r.IntN(len(podAddrs))])
		p := pods[g.r.IntN(len(pods))]
		flow(a, p)
		flow(p, a)
	}
}

// genCheckCluster builds one random cluster and compares everything.
func genCheckCluster(t *testing.T, seed int64) *genCluster {
	t.Helper()
	g := genNewCluster(seed)
	ipBlockMatchesPods := seed%4 != 3 // every fourth seed: Cilium-like
	e, err := policylib.Build(g.snap, policylib.WithIPBlockMatchesPods(ipBlockMatchesPods))
	if err != nil {
		t.Fatalf("seed %d: Build: %v\n%s", seed, err, genDump(&g.snap))
	}
	genCheckMatrix(t, e, g, ipBlockMatchesPods, "")
	genCheckDecide(t, e, g, ipBlockMatchesPods, true, "")
	return g
}

func TestDifferentialCluster(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 40
	}
	for seed := range int64(seeds) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			genCheckCluster(t, seed)
		})
	}
}

// ---- incremental ----

// mutate applies one random change to the engine and to the snapshot and
// describes it.
func (g *genCluster) mutate(t *testing.T, e *policylib.Engine) string {
	s := &g.snap
	nsInUse := func() []string {
		var out []string
		add := func(n string) {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
		for _, ns := range s.Namespaces {
			add(ns.Name)
		}
		for _, p := range s.Pods {
			add(p.Namespace)
		}
		for _, np := range s.Policies {
			add(np.Namespace)
		}
		return out
	}
	anyNamespace := func() string {
		if in := nsInUse(); len(in) > 0 && g.r.IntN(5) != 0 {
			return g.pick(in)
		}
		return g.pick(genNamespaceNames)
	}
	setPod := func(i int, p *corev1.Pod) {
		if err := e.SetPod(p); err != nil {
			t.Fatalf("seed %d: SetPod(%s/%s): %v", g.seed, p.Namespace, p.Name, err)
		}
		if i < 0 {
			s.Pods = append(s.Pods, p)
		} else {
			s.Pods[i] = p
		}
	}
	setPolicy := func(i int, np *networkingv1.NetworkPolicy) {
		if err := e.SetPolicy(np); err != nil {
			t.Fatalf("seed %d: SetPolicy(%s/%s): %v", g.seed, np.Namespace, np.Name, err)
		}
		if i < 0 {
			s.Policies = append(s.Policies, np)
		} else {
			s.Policies[i] = np
		}
	}
	// retire remembers the addresses a pod gives up, which are then
	// outside addresses: an engine that still maps them to the pod is stale.
	retire := func(p *corev1.Pod) {
		if !p.Spec.HostNetwork {
			for _, a := range p.Status.PodIPs {
				g.retired = append(g.retired, netip.MustParseAddr(a.IP))
			}
		}
	}
	for {
		switch op := g.r.IntN(18); {
		case op < 2 && len(s.Pods) > 0: // relabel a pod, maybe moving it too
			i := g.r.IntN(len(s.Pods))
			p := s.Pods[i].DeepCopy()
			p.Labels = g.labels()
			if g.r.IntN(3) == 0 {
				retire(p)
				g.placePod(p, g.r.IntN(20))
			}
			p.Status.Phase = corev1.PodRunning
			setPod(i, p)
			return fmt.Sprintf("SetPod %s/%s relabel %v hostNetwork=%t ips=%v", p.Namespace, p.Name, p.Labels, p.Spec.HostNetwork, p.Status.PodIPs)
		case op == 2 && len(s.Pods) > 0: // same labels, new addresses and ports
			i := g.r.IntN(len(s.Pods))
			p := s.Pods[i].DeepCopy()
			retire(p)
			kind := genPodIPv4 + g.r.IntN(4)
			if !p.Spec.HostNetwork {
				kind = []int{genPodPending, genPodDualStack, genPodDualStack6, genPodIPv6, genPodIPv4}[g.r.IntN(5)]
			}
			g.placePod(p, kind)
			setPod(i, p)
			return fmt.Sprintf("SetPod %s/%s move ips=%v", p.Namespace, p.Name, p.Status.PodIPs)
		case op == 3 && len(s.Pods) > 0: // same labels, onto or off the host network
			i := g.r.IntN(len(s.Pods))
			p := s.Pods[i].DeepCopy()
			retire(p)
			if p.Spec.HostNetwork {
				g.placePod(p, genPodIPv4)
			} else {
				g.placePod(p, genPodHostNetwork)
			}
			setPod(i, p)
			return fmt.Sprintf("SetPod %s/%s hostNetwork=%t ips=%v", p.Namespace, p.Name, p.Spec.HostNetwork, p.Status.PodIPs)
		case op < 6: // new pod
			p := g.pod(anyNamespace(), g.podName())
			setPod(-1, p)
			return fmt.Sprintf("SetPod %s/%s new %v ips=%v phase=%s", p.Namespace, p.Name, p.Labels, p.Status.PodIPs, p.Status.Phase)
		case op == 6 && len(s.Pods) > 0:
			i := g.r.IntN(len(s.Pods))
			p := s.Pods[i]
			retire(p)
			e.DeletePod(p.Namespace, p.Name)
			s.Pods = slices.Delete(s.Pods, i, i+1)
			return fmt.Sprintf("DeletePod %s/%s", p.Namespace, p.Name)
		case op == 7 && len(s.Pods) > 0: // the pod finishes
			i := g.r.IntN(len(s.Pods))
			p := s.Pods[i].DeepCopy()
			retire(p)
			p.Status.Phase = corev1.PodSucceeded
			setPod(i, p)
			return fmt.Sprintf("SetPod %s/%s Succeeded", p.Namespace, p.Name)
		case op < 12: // set a namespace's labels
			ns := g.namespace(anyNamespace())
			e.SetNamespace(ns)
			i := slices.IndexFunc(s.Namespaces, func(x *corev1.Namespace) bool { return x.Name == ns.Name })
			if i < 0 {
				s.Namespaces = append(s.Namespaces, ns)
			} else {
				s.Namespaces[i] = ns
			}
			return fmt.Sprintf("SetNamespace %s %v", ns.Name, ns.Labels)
		case op < 14 && len(s.Namespaces) > 0:
			i := g.r.IntN(len(s.Namespaces))
			name := s.Namespaces[i].Name
			e.DeleteNamespace(name)
			s.Namespaces = slices.Delete(s.Namespaces, i, i+1)
			return "DeleteNamespace " + name
		case op == 14: // add a policy
			np := g.policy(anyNamespace(), g.policyName())
			setPolicy(-1, np)
			return fmt.Sprintf("SetPolicy %s/%s new", np.Namespace, np.Name)
		case op == 15 && len(s.Policies) > 0: // replace a policy
			i := g.r.IntN(len(s.Policies))
			np := g.policy(s.Policies[i].Namespace, s.Policies[i].Name)
			setPolicy(i, np)
			return fmt.Sprintf("SetPolicy %s/%s replace", np.Namespace, np.Name)
		case op == 16 && len(s.Policies) > 0:
			i := g.r.IntN(len(s.Policies))
			np := s.Policies[i]
			e.DeletePolicy(np.Namespace, np.Name)
			s.Policies = slices.Delete(s.Policies, i, i+1)
			return fmt.Sprintf("DeletePolicy %s/%s", np.Namespace, np.Name)
		case op == 17 && len(s.Policies) > 0: // an invalid update changes nothing
			np := g.invalidPolicy(s.Policies[g.r.IntN(len(s.Policies))])
			var pe *policylib.PolicyError
			if err := e.SetPolicy(np); !errors.As(err, &pe) {
				t.Fatalf("seed %d: SetPolicy(invalid %s/%s) = %v, want a *PolicyError", g.seed, np.Namespace, np.Name, err)
			}
			return fmt.Sprintf("SetPolicy %s/%s invalid (rejected)", np.Namespace, np.Name)
		}
	}
}

// genCheckIncremental applies steps random changes to an engine built from
// g, comparing after each with the reference and with a fresh build.
func genCheckIncremental(t *testing.T, g *genCluster, steps int) {
	t.Helper()
	ipBlockMatchesPods := g.seed%4 != 3
	opt := policylib.WithIPBlockMatchesPods(ipBlockMatchesPods)
	e, err := policylib.Build(g.snap, opt)
	if err != nil {
		t.Fatalf("seed %d: Build: %v\n%s", g.seed, err, genDump(&g.snap))
	}
	var log []string
	for step := range steps {
		log = append(log, g.mutate(t, e))
		context := fmt.Sprintf(" after step %d, changes:\n  %s\n", step, strings.Join(log, "\n  "))
		got := genCheckMatrix(t, e, g, ipBlockMatchesPods, context)
		genCheckDecide(t, e, g, ipBlockMatchesPods, false, context)

		fresh, err := policylib.Build(g.snap, opt)
		if err != nil {
			t.Fatalf("seed %d%s: Build: %v", g.seed, context, err)
		}
		want, err := fresh.Matrix(nil, genPorts)
		if err != nil {
			t.Fatalf("seed %d%s: fresh Matrix: %v", g.seed, context, err)
		}
		if !slices.Equal(got.Pods, want.Pods) {
			t.Fatalf("seed %d%s: incremental pods %v, fresh build %v", g.seed, context, got.Pods, want.Pods)
		}
		for k, pp := range want.Ports {
			for i, from := range want.Pods {
				for j, to := range want.Pods {
					if got.Allowed(i, j, k) != want.Allowed(i, j, k) {
						t.Fatalf("seed %d%s: %s -> %s %s: incremental engine allowed=%t, fresh build allowed=%t\n%s",
							g.seed, context, from, to, pp, got.Allowed(i, j, k), want.Allowed(i, j, k), genDump(&g.snap))
					}
				}
			}
		}
	}
}

func TestDifferentialIncremental(t *testing.T) {
	seeds := 10
	if testing.Short() {
		seeds = 3
	}
	for seed := int64(1000); seed < int64(1000+seeds); seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			genCheckIncremental(t, genNewCluster(seed), 50)
		})
	}
}

// FuzzDifferential checks one random cluster per input, then a few
// incremental changes to it.
func FuzzDifferential(f *testing.F) {
	for _, seed := range []int64{0, 1, 2, 3, 42, -7} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, seed int64) {
		g := genCheckCluster(t, seed)
		genCheckIncremental(t, g, 10)
	})
}

package enforcer_test

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podwall/podwall/enforcer"
	"github.com/podwall/podwall/policylib"
	"github.com/podwall/podwall/policylib/addrset"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// goldenScenarios are the rulesets whose rendering is pinned in testdata.
func goldenScenarios(t *testing.T) []scenario {
	out := []scenario{
		seedStage(t, ""),
		seedStage(t, "networkpolicy.yaml"),
		seedStage(t, "networkpolicy-ipblock.yaml"),
	}
	out = append(out, e2eCases()...)
	strict := e2eCases()[4]
	strict.name = "e2e-egress-host-judged"
	strict.opts.AllowHostToLocalPods = enforcer.Bool(false)
	strict.opts.Table = "podwall-strict"
	return append(out, strict)
}

func TestRenderGolden(t *testing.T) {
	for _, s := range goldenScenarios(t) {
		t.Run(s.name, func(t *testing.T) {
			_, rs := s.compile(t)
			got := rs.Render()
			if again := rs.Render(); again != got {
				t.Fatal("Render is not deterministic")
			}
			path := filepath.Join("testdata", s.name+".nft")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Render differs from %s (run go test -update to accept):\n%s", path, lineDiff(string(want), got))
			}
		})
	}
}

// lineDiff shows the first lines where two texts differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n-" + wl + "\n+" + gl
		}
	}
	return ""
}

// checkModel compares Ruleset.Allowed with policylib's Decide for every
// pair of endpoint addresses of one family and every probe: they must
// agree, except that the node's own traffic to its pods passes when the
// host may reach them.
func checkModel(t *testing.T, s scenario, e *policylib.Engine, rs *enforcer.Ruleset) {
	t.Helper()
	addrs := s.endpointAddrs()
	pods := map[netip.Addr]bool{}
	for _, p := range s.snap.Pods {
		for _, a := range podAddrs(p) {
			pods[a] = true
		}
	}
	hostOK := s.opts.AllowHostToLocalPods == nil || *s.opts.AllowHostToLocalPods
	for _, src := range addrs {
		for _, dst := range addrs {
			if src == dst || src.Is4() != dst.Is4() {
				continue
			}
			for _, pr := range kernelProbes {
				d, err := e.Decide(policylib.Flow{From: policylib.AddrEndpoint(src), To: policylib.AddrEndpoint(dst), Protocol: pr.proto, Port: pr.port})
				if err != nil {
					t.Fatal(err)
				}
				want := d.Allowed
				if hostOK && rs.IsHost(src) && pods[dst] {
					want = true
				}
				if got := rs.Allowed(src, dst, pr.proto, pr.port); got != want {
					t.Errorf("%s: %s -> %s %s/%d: ruleset allows=%v, policylib allows=%v (egress %v, ingress %v)",
						s.name, src, dst, pr.proto, pr.port, got, d.Allowed, d.Egress, d.Ingress)
				}
			}
		}
	}
}

func TestModelMatchesDecide(t *testing.T) {
	for _, s := range goldenScenarios(t) {
		e, rs := s.compile(t)
		checkModel(t, s, e, rs)
	}
	seeds := 500
	if testing.Short() {
		seeds = 100
	}
	for seed := range uint64(seeds) {
		s := randomScenario(seed)
		e, rs := s.compile(t)
		checkModel(t, s, e, rs)
		if t.Failed() {
			t.Fatalf("seed %d failed; policies:\n%s", seed, describePolicies(s))
		}
	}
}

func describePolicies(s scenario) string {
	var b strings.Builder
	for _, p := range s.snap.Policies {
		b.WriteString(policyString(p))
		b.WriteByte('\n')
	}
	return b.String()
}

func policyString(p *networkingv1.NetworkPolicy) string {
	return p.Namespace + "/" + p.Name + ": " + p.Spec.String()
}

func TestCompileDisjointPorts(t *testing.T) {
	// Overlapping ranges with different peers become disjoint pieces whose
	// peers are the union of the ranges covering them.
	a := netip.MustParseAddr("10.0.0.1")
	b := netip.MustParseAddr("10.0.0.2")
	s := scenario{name: "overlap", snap: policylib.Snapshot{
		Pods: []*corev1.Pod{
			pod("n", "dst", labels("app", "dst"), []netip.Addr{netip.MustParseAddr("10.0.0.9")}),
			pod("n", "a", labels("app", "a"), []netip.Addr{a}),
			pod("n", "b", labels("app", "b"), []netip.Addr{b}),
		},
		Policies: []*networkingv1.NetworkPolicy{
			withIngress(policy("n", "p1", sel("app", "dst"), ingressOnly),
				ingress(peers(podPeer(sel("app", "a"))), rangePort(tcp, 80, 90)),
				ingress(peers(podPeer(sel("app", "b"))), rangePort(tcp, 85, 100), numPort(tcp, 101)),
				ingress(peers(podPeer(sel("app", "b"))), numPort(udp, 53)),
			),
			withIngress(policy("n", "p2", sel("app", "dst"), ingressOnly),
				ingress(peers(podPeer(sel("app", "a"))))), // a on every port
		},
	}}
	_, rs := s.compile(t)
	p, ok := rs.Pod(netip.MustParseAddr("10.0.0.9"))
	if !ok || p.Ingress == nil {
		t.Fatal("dst has no ingress rules")
	}
	var got []string
	for _, pr := range p.Ingress.Ports {
		got = append(got, pr.String())
	}
	// a is allowed on every port, so it leaves the port pieces; b's 85-100
	// and 101 merge.
	want := []string{"TCP/85-101 {10.0.0.2/32}", "UDP/53 {10.0.0.2/32}"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("ports = %q, want %q", got, want)
	}
	if !p.Ingress.Any.Equal(addrset.Of(netip.PrefixFrom(a, 32))) {
		t.Errorf("any = %s, want {10.0.0.1/32}", p.Ingress.Any)
	}
}

func TestCompileOpenAndUnknown(t *testing.T) {
	s := e2eScenario("allow-all", withIngress(policy("x", "all", sel(), ingressOnly), ingress(nil)))
	_, rs := s.compile(t)
	for _, p := range rs.Pods {
		if p.Ingress != nil || p.Egress != nil {
			t.Errorf("%s: a policy allowing everything still gives rules", p.Pod)
		}
	}
	if strings.Contains(rs.Render(), "chain ingress/") {
		t.Error("open pods rendered with chains")
	}
	_, err := enforcer.Compile(s.engine(t), []types.NamespacedName{{Namespace: "x", Name: "nope"}}, enforcer.Options{})
	if !errors.Is(err, policylib.ErrUnknownEndpoint) {
		t.Errorf("unknown local pod: err = %v, want ErrUnknownEndpoint", err)
	}
}

func TestCompileConflicts(t *testing.T) {
	same := []netip.Addr{netip.MustParseAddr("10.0.0.1")}
	s := scenario{name: "conflict", snap: policylib.Snapshot{
		Pods:     []*corev1.Pod{pod("n", "old", labels(), same), pod("n", "new", labels(), same)},
		Policies: []*networkingv1.NetworkPolicy{policy("n", "deny", sel(), ingressOnly)},
	}}
	_, rs := s.compile(t)
	if len(rs.Conflicts) != 1 || rs.Conflicts[0].Pods[0].Name != "new" {
		t.Fatalf("conflicts = %+v, want one, dispatched to n/new", rs.Conflicts)
	}
	if n := strings.Count(rs.Render(), "10.0.0.1 : jump"); n != 1 {
		t.Errorf("address in the map %d times, want once", n)
	}
}

func TestOptionsValidate(t *testing.T) {
	if err := (enforcer.Options{}).Validate(); err != nil {
		t.Errorf("zero Options: %v", err)
	}
	bad := enforcer.Options{
		Table:     "9bad name",
		NodeAddrs: []netip.Addr{{}, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("::ffff:10.0.0.1"), netip.MustParseAddr("fe80::1%eth0")},
	}
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad Options validated")
	}
	for _, want := range []string{"Options.Table", "NodeAddrs[0]", "NodeAddrs[2]", "NodeAddrs[3]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if _, err := enforcer.Compile(policylib.NewEngine(), nil, bad); err == nil {
		t.Error("Compile accepted bad Options")
	}
	long := enforcer.Options{Table: strings.Repeat("t", 256)}
	if long.Validate() == nil {
		t.Error("a 256-byte table name validated")
	}
}

func TestLongNames(t *testing.T) {
	name := strings.Repeat("p", 253)
	s := scenario{name: "long", snap: policylib.Snapshot{
		Pods:     []*corev1.Pod{pod(strings.Repeat("n", 63), name, labels(), []netip.Addr{netip.MustParseAddr("10.0.0.1")})},
		Policies: []*networkingv1.NetworkPolicy{policy(strings.Repeat("n", 63), "deny", sel(), bothTypes)},
	}}
	_, rs := s.compile(t)
	for _, line := range strings.Split(rs.Render(), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, word := range strings.Fields(line) {
			if len(strings.TrimPrefix(word, "@")) > 255 {
				t.Errorf("name of %d bytes: %.40s...", len(word), word)
			}
		}
	}
}

// TestCovers checks the test that lets an Apply skip conntrack cleanup for
// a pod whose rules only widened: whenever Covers(new, old) holds, every
// flow the old rules permit the new ones permit too.
func TestCovers(t *testing.T) {
	var yes, no int // real widenings found, and refusals
	probes := []struct {
		proto policylib.Protocol
		port  int32
	}{{policylib.ICMP, 0}}
	for port := int32(78); port <= 84; port++ {
		probes = append(probes, struct {
			proto policylib.Protocol
			port  int32
		}{policylib.TCP, port}, struct {
			proto policylib.Protocol
			port  int32
		}{policylib.UDP, port})
	}
	for seed := range uint64(200) {
		// b is another cluster over the same pods; c is a with b's policies
		// added, which widens what a's policies already isolate.
		a, b := randomScenario(seed), randomScenario(seed+1)
		c := a
		c.snap.Policies = slices.Clone(a.snap.Policies)
		for _, p := range b.snap.Policies {
			p = p.DeepCopy()
			p.Name = "extra-" + p.Name
			c.snap.Policies = append(c.snap.Policies, p)
		}
		_, ra := a.compile(t)
		_, rb := b.compile(t)
		_, rc := c.compile(t)
		peers := append(a.endpointAddrs(), netip.MustParseAddr("10.241.0.7"), netip.MustParseAddr("172.19.5.5"), netip.MustParseAddr("8.8.8.8"))
		for i := range ra.Pods {
			for _, pair := range [][2]*enforcer.Rules{
				{ra.Pods[i].Ingress, rb.Pods[i].Ingress}, {ra.Pods[i].Egress, rb.Pods[i].Egress},
				{ra.Pods[i].Ingress, rc.Pods[i].Ingress}, {ra.Pods[i].Egress, rc.Pods[i].Egress},
				{rc.Pods[i].Ingress, ra.Pods[i].Ingress}, {rc.Pods[i].Egress, ra.Pods[i].Egress},
			} {
				old, new := pair[0], pair[1]
				if !enforcer.Covers(new, old) {
					no++
					continue
				}
				if old != nil && new != nil && !old.Equal(new) {
					yes++ // a real widening
				}
				for _, peer := range peers {
					for _, pr := range probes {
						if old.Permits(peer, pr.proto, pr.port) && !new.Permits(peer, pr.proto, pr.port) {
							t.Fatalf("seed %d pod %s: Covers says the new rules permit all the old did, but %s %s/%d is no longer permitted\nold %+v\nnew %+v",
								seed, ra.Pods[i].Pod, peer, pr.proto, pr.port, old, new)
						}
					}
				}
			}
		}
	}
	t.Logf("Covers held for %d changed rules and failed %d times", yes, no)
	if yes == 0 || no == 0 {
		t.Errorf("Covers held for %d changed rules and failed %d times: the cases do not exercise both", yes, no)
	}
}

// TestLostPeers checks what targeted conntrack cleanup relies on: every
// flow old rules permit and new ones do not is with a peer LostPeers names;
// and it names no more than the peer that lost something when an old port
// range is split among new ones.
func TestLostPeers(t *testing.T) {
	var probes []struct {
		proto policylib.Protocol
		port  int32
	}
	probes = append(probes, struct {
		proto policylib.Protocol
		port  int32
	}{policylib.ICMP, 0})
	for port := int32(78); port <= 84; port++ {
		probes = append(probes, struct {
			proto policylib.Protocol
			port  int32
		}{policylib.TCP, port}, struct {
			proto policylib.Protocol
			port  int32
		}{policylib.UDP, port})
	}
	lostSome := 0
	for seed := range uint64(200) {
		a, b := randomScenario(seed), randomScenario(seed+1)
		_, ra := a.compile(t)
		_, rb := b.compile(t)
		peers := append(a.endpointAddrs(), netip.MustParseAddr("10.241.0.7"), netip.MustParseAddr("172.19.5.5"), netip.MustParseAddr("8.8.8.8"))
		for i := range ra.Pods {
			for _, pair := range [][2]*enforcer.Rules{
				{ra.Pods[i].Ingress, rb.Pods[i].Ingress}, {ra.Pods[i].Egress, rb.Pods[i].Egress},
				{rb.Pods[i].Ingress, ra.Pods[i].Ingress}, {rb.Pods[i].Egress, ra.Pods[i].Egress},
			} {
				old, new := pair[0], pair[1]
				if old == nil || new == nil {
					continue // cleanup does not ask: a newly isolated direction cuts all the pod's flows
				}
				lost := enforcer.LostPeers(old, new)
				for _, peer := range peers {
					for _, pr := range probes {
						if old.Permits(peer, pr.proto, pr.port) && !new.Permits(peer, pr.proto, pr.port) {
							lostSome++
							if !lost.Contains(peer) {
								t.Fatalf("seed %d pod %s: %s %s/%d is no longer permitted, but LostPeers gives %s\nold %+v\nnew %+v",
									seed, ra.Pods[i].Pod, peer, pr.proto, pr.port, lost, old, new)
							}
						}
					}
				}
			}
		}
	}
	if lostSome == 0 {
		t.Error("no rules lost a flow: the cases do not exercise LostPeers")
	}
	// Exactly one peer lost: a peer removed from a port range's peers.
	a, b, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	one := func(xs ...netip.Addr) addrset.Set {
		var s addrset.Set
		for _, x := range xs {
			s = s.Union(addrset.FromPrefix(netip.PrefixFrom(x, 32)))
		}
		return s
	}
	old := &enforcer.Rules{Any: one(a), Ports: []enforcer.PortRule{{Protocol: policylib.TCP, First: 80, Last: 90, Peers: one(b, c)}}}
	new := &enforcer.Rules{Any: one(a), Ports: []enforcer.PortRule{
		{Protocol: policylib.TCP, First: 80, Last: 84, Peers: one(b)},
		{Protocol: policylib.TCP, First: 85, Last: 90, Peers: one(b, c)},
	}}
	if got := enforcer.LostPeers(old, new); !got.Equal(one(c)) {
		t.Errorf("LostPeers = %s, want {%s/32}", got, c)
	}
}

// A Compiler asks the engine only for the pods marked stale and new ones,
// keeps the rules of the others, and gives what Compile gives once every
// pod whose rules changed is marked.
func TestCompilerReuses(t *testing.T) {
	s := e2eScenario("x/a ingress from y",
		withIngress(policy("x", "a-from-y", sel("pod", "a"), ingressOnly), ingress(peers(nsPeer(sel("ns", "y"))))))
	e := s.engine(t)
	local := s.local()
	c := enforcer.NewCompiler()
	first, err := c.Compile(e, local, s.options())
	if err != nil {
		t.Fatal(err)
	}
	if c.Recompiled() != len(local) {
		t.Errorf("first Compile recompiled %d pods, want all %d", c.Recompiled(), len(local))
	}
	// A new pod in y: x/a's peers grow. Unmarked, x/a keeps its old rules.
	if err := e.SetPod(pod("y", "d", labels("pod", "d"), []netip.Addr{netip.MustParseAddr("10.240.1.9")})); err != nil {
		t.Fatal(err)
	}
	xa := types.NamespacedName{Namespace: "x", Name: "a"}
	rs, err := c.Compile(e, local, s.options())
	if err != nil {
		t.Fatal(err)
	}
	if c.Recompiled() != 0 || rs.Render() != first.Render() {
		t.Errorf("nothing marked: recompiled %d pods, ruleset changed %v", c.Recompiled(), rs.Render() != first.Render())
	}
	if n := c.InvalidateIsolatedBy(func(p types.NamespacedName) bool { return p.Name == "a-from-y" }); n != 1 {
		t.Errorf("InvalidateIsolatedBy marked %d pods, want x/a only", n)
	}
	if n := c.Invalidate(xa); n != 0 {
		t.Errorf("marking x/a again counted %d", n)
	}
	rs, err = c.Compile(e, local, s.options())
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := enforcer.Compile(e, local, s.options())
	if err != nil {
		t.Fatal(err)
	}
	if c.Recompiled() != 1 || rs.Render() != fresh.Render() {
		t.Errorf("x/a marked: recompiled %d pods; ruleset\n%s\nwant\n%s", c.Recompiled(), rs.Render(), fresh.Render())
	}
	// Unchanged pods share their rules with the previous ruleset, so an
	// Applier's comparison of them is a pointer comparison.
	for i := range rs.Pods {
		if p := rs.Pods[i]; p.Pod != xa && p.Ingress != first.Pods[i].Ingress {
			t.Errorf("%s: rules not shared with the previous ruleset", p.Pod)
		}
	}
	// A pod that stops being local is forgotten; one namespace's pods are
	// marked by InvalidateNamespace; InvalidateAll marks every pod.
	if _, err := c.Compile(e, local[1:], s.options()); err != nil {
		t.Fatal(err)
	}
	if n := c.InvalidateNamespace("x"); n != 2 {
		t.Errorf("InvalidateNamespace(x) marked %d pods, want x/b and x/c", n)
	}
	if n := c.InvalidateAll(); n != len(local)-3 {
		t.Errorf("InvalidateAll marked %d more pods, want %d", n, len(local)-3)
	}
}

package rules

import (
	"net/netip"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	corev1 "k8s.io/api/core/v1"
	ktypes "k8s.io/apimachinery/pkg/types"

	"github.com/podwall/podwall/manifest"
	"github.com/podwall/podwall/policylib"
)

// referenceExplanationTerm is podwall.decide's result built the plain way,
// every part afresh: what the kept halves of compiledSnapshot must equal.
func referenceExplanationTerm(x policylib.Explanation) *ast.Term {
	side := func(v policylib.Verdict, pols []ktypes.NamespacedName) *ast.Term {
		rule := ast.NullTerm()
		if v.Outcome == policylib.AllowedByRule {
			r := v.Rule
			rule = ast.ObjectTerm(
				ast.Item(ast.StringTerm("policy"), ast.StringTerm(r.Policy.String())),
				ast.Item(ast.StringTerm("namespace"), ast.StringTerm(r.Policy.Namespace)),
				ast.Item(ast.StringTerm("name"), ast.StringTerm(r.Policy.Name)),
				ast.Item(ast.StringTerm("direction"), ast.StringTerm(r.Direction.String())),
				ast.Item(ast.StringTerm("rule"), ast.IntNumberTerm(r.Rule)),
				ast.Item(ast.StringTerm("peer"), ast.IntNumberTerm(r.Peer)),
				ast.Item(ast.StringTerm("port"), ast.IntNumberTerm(r.Port)),
				ast.Item(ast.StringTerm("ref"), ast.StringTerm(r.String())),
			)
		}
		ps := make([]*ast.Term, len(pols))
		for i, p := range pols {
			ps[i] = ast.StringTerm(p.String())
		}
		return ast.ObjectTerm(
			ast.Item(ast.StringTerm("outcome"), ast.StringTerm(v.Outcome.String())),
			ast.Item(ast.StringTerm("rule"), rule),
			ast.Item(ast.StringTerm("policies"), ast.ArrayTerm(ps...)),
		)
	}
	notes := make([]*ast.Term, len(x.Notes))
	for i, n := range x.Notes {
		notes[i] = ast.StringTerm(n)
	}
	return ast.ObjectTerm(
		ast.Item(ast.StringTerm("allowed"), ast.BooleanTerm(x.Decision.Allowed)),
		ast.Item(ast.StringTerm("egress"), side(x.Decision.Egress, x.EgressPolicies)),
		ast.Item(ast.StringTerm("ingress"), side(x.Decision.Ingress, x.IngressPolicies)),
		ast.Item(ast.StringTerm("notes"), ast.ArrayTerm(notes...)),
		ast.Item(ast.StringTerm("reasons"), ast.StringTerm(x.String())),
	)
}

// TestDecisionTermsMatchTheReference decides every flow between the seed's
// pods, nodes and a few addresses, on several ports and protocols, against
// one compiledSnapshot per stage (so that kept halves are reused), and
// compares each decision with the reference.
func TestDecisionTermsMatchTheReference(t *testing.T) {
	for _, stage := range [][]string{nil, {"networkpolicy.yaml"}, {"networkpolicy-ipblock.yaml"}} {
		paths := []string{seedDir + "/cluster"}
		for _, p := range stage {
			paths = append(paths, seedDir+"/original/"+p)
		}
		set, err := manifest.Load(paths...)
		if err != nil {
			t.Fatal(err)
		}
		eng, err := policylib.Build(policylib.Snapshot{Namespaces: set.Namespaces, Nodes: set.Nodes, Pods: set.Pods, Services: set.Services, Policies: set.NetworkPolicies})
		if err != nil {
			t.Fatal(err)
		}
		cs := &compiledSnapshot{eng: eng, sides: map[sideKey]*ast.Term{}}
		var ends []policylib.Endpoint
		for _, p := range set.Pods {
			ends = append(ends, policylib.PodEndpoint(p.Namespace, p.Name))
			if a, err := netip.ParseAddr(p.Status.PodIP); err == nil {
				ends = append(ends, policylib.AddrEndpoint(a))
			}
		}
		for _, n := range set.Nodes {
			ends = append(ends, policylib.NodeEndpoint(n.Name))
		}
		ends = append(ends, policylib.AddrEndpoint(netip.MustParseAddr("203.0.113.9")), policylib.AddrEndpoint(netip.MustParseAddr("192.168.2.7")))
		n := 0
		for round := range 2 { // the second round reads kept halves only
			for _, from := range ends {
				for _, to := range ends {
					for _, f := range []policylib.Flow{
						{From: from, To: to, Protocol: policylib.TCP, Port: 80},
						{From: from, To: to, Protocol: policylib.TCP, Port: 8080},
						{From: from, To: to, Protocol: policylib.UDP, Port: 53},
						{From: from, To: to, Protocol: policylib.ICMP},
					} {
						x, err := eng.Explain(f)
						if err != nil {
							continue // an end that is no pod of the cluster, say
						}
						n++
						got, want := cs.explanationTerm(x), referenceExplanationTerm(x)
						if got.Value.Compare(want.Value) != 0 {
							t.Fatalf("%v %v (round %d):\n got %v\nwant %v", stage, f, round, got, want)
						}
					}
				}
			}
		}
		if n == 0 {
			t.Fatalf("%v: no flow decided", stage)
		}
	}
}

// TestDecodedObjectsAreCopies: an object decoded before comes back equal,
// but never shared, so no engine can change another's.
func TestDecodedObjectsAreCopies(t *testing.T) {
	v := ast.MustParseTerm(`{"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}}, "status": {"podIP": "10.0.0.1"}}`).Value
	a, err := decodeObject[corev1.Pod]("pods", v)
	if err != nil {
		t.Fatal(err)
	}
	a.Labels["app"] = "changed"
	b, err := decodeObject[corev1.Pod]("pods", v)
	if err != nil {
		t.Fatal(err)
	}
	if b == a || b.Labels["app"] != "web" || b.Name != "web" || b.Status.PodIP != "10.0.0.1" {
		t.Fatalf("second decode %+v shares with or follows the first", b)
	}
	// An equal value built apart is found too; a different one is not.
	c, err := decodeObject[corev1.Pod]("pods", ast.MustParseTerm(`{"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}}, "status": {"podIP": "10.0.0.1"}}`).Value)
	if err != nil || c.Labels["app"] != "web" {
		t.Fatal(c, err)
	}
	d, err := decodeObject[corev1.Pod]("pods", ast.MustParseTerm(`{"metadata": {"name": "db", "namespace": "default"}}`).Value)
	if err != nil || d.Name != "db" {
		t.Fatal(d, err)
	}
	if _, err := decodeObject[corev1.Pod]("pods", ast.MustParseTerm(`{"metadata": {"name": 5}}`).Value); err == nil {
		t.Error("a pod named 5 decoded")
	}
}

// TestParseEndpoint holds the shortcut to policylib.ParseEndpoint.
func TestParseEndpoint(t *testing.T) {
	for _, s := range []string{
		"default/web", "kube-system/coredns-1", "node/k8s-node1", "node/", "node/a/b", "a/b/c", "/web", "default/", "web",
		"10.0.0.1", "fe80::1", "fe80::1%eth0", "fe80::1%a/b", "::ffff:10.0.0.1", "10.0.0.1/24", "a:b/c", "a%b/c", "",
	} {
		got, gotErr := parseEndpoint(s)
		want, wantErr := policylib.ParseEndpoint(s)
		if got != want || (gotErr == nil) != (wantErr == nil) {
			t.Errorf("%q: %v, %v; policylib says %v, %v", s, got, gotErr, want, wantErr)
		}
	}
}

// TestRecentEnginesAcrossQueries: a query deciding against the snapshot an
// earlier one compiled (equal, not the same value) compiles nothing, and a
// new snapshot is compiled.
func TestRecentEnginesAcrossQueries(t *testing.T) {
	flow := `{"from": "default/busybox", "to": "default/httpd-1", "port": 80}`
	decide := func(in map[string]any) {
		t.Helper()
		mustEval(t, "podwall.decide(input.s, "+flow+").allowed", in)
	}
	compiles := func(f func()) int64 {
		before := engineCompiles.Load()
		f()
		return engineCompiles.Load() - before
	}
	stage1 := func() map[string]any { return map[string]any{"s": seedSnapshot(t, "networkpolicy.yaml")} }
	stage2 := func() map[string]any { return map[string]any{"s": seedSnapshot(t, "networkpolicy-ipblock.yaml")} }
	stage0 := func() map[string]any { return map[string]any{"s": seedSnapshot(t)} }
	decide(stage1())
	if n := compiles(func() { decide(stage1()) }); n != 0 {
		t.Errorf("the same snapshot again: %d compiled, want 0", n)
	}
	if n := compiles(func() { decide(stage2()) }); n != 1 {
		t.Errorf("a new snapshot: %d compiled, want 1", n)
	}
	if n := compiles(func() { decide(stage1()); decide(stage2()) }); n != 0 {
		t.Errorf("the two recent snapshots: %d compiled, want 0", n)
	}
	// A third pushes out the least recent (stage1).
	if n := compiles(func() { decide(stage0()); decide(stage2()); decide(stage1()) }); n != 2 {
		t.Errorf("three snapshots by turns: %d compiled, want 2", n)
	}
}

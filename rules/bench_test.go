package rules

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/podwall/podwall/manifest"
	"github.com/podwall/podwall/policylib"
)

// BenchmarkEvalRequiredLabels is one webhook evaluation of a Pod CREATE
// with only requiredLabels configured: encode the request, evaluate deny,
// warn, dryrun and patch, decode the results. Target: median <= 50µs.
func BenchmarkEvalRequiredLabels(b *testing.B) {
	ctx := context.Background()
	ev, err := NewEvaluator(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(testConfig), &cfg); err != nil {
		b.Fatal(err)
	}
	rulesCfg := cfg["rules"].(map[string]any)
	cfg["rules"] = map[string]any{"requiredLabels": rulesCfg["requiredLabels"]}
	if err := ev.SetConfig(ctx, cfg); err != nil {
		b.Fatal(err)
	}
	req := request(b, admissionv1.Create, "Pod", pod("web", map[string]string{"app.kubernetes.io/name": "web", "team": "ops"}), nil)
	b.ReportAllocs()
	for b.Loop() {
		res, err := ev.Eval(ctx, req)
		if err != nil || len(res.Violations) != 1 {
			b.Fatal(res, err)
		}
	}
}

// BenchmarkEvalBaseline is the floor of a prepared OPA query on the same
// machine (one input lookup), to read the numbers above against when the
// machine is busy.
func BenchmarkEvalBaseline(b *testing.B) {
	ctx := context.Background()
	pq, err := rego.New(rego.Query("x := input.request.uid")).PrepareForEval(ctx)
	if err != nil {
		b.Fatal(err)
	}
	input, err := ast.InterfaceToValue(map[string]any{"request": map[string]any{"uid": "u"}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if rs, err := pq.Eval(ctx, rego.EvalParsedInput(input)); err != nil || len(rs) != 1 {
			b.Fatal(rs, err)
		}
	}
}

// BenchmarkEvalPodCreateAllFamilies is the same Pod CREATE with every
// family configured and the seed cluster in the store.
func BenchmarkEvalPodCreateAllFamilies(b *testing.B) {
	ctx := context.Background()
	ev := seedEvaluator(b)
	req := request(b, admissionv1.Create, "Pod", pod("web", map[string]string{"app.kubernetes.io/name": "web", "team": "web"}), nil)
	b.ReportAllocs()
	for b.Loop() {
		res, err := ev.Eval(ctx, req)
		if err != nil || !res.Allowed() {
			b.Fatal(res, err)
		}
	}
}

// The flow decision benchmarks compare podwall.decide, through a prepared
// Rego query, with policylib called directly, on the seed at stage 1:
// busybox -> httpd-1 TCP/80 (denied).

const benchFlow = `{"from": "default/busybox", "to": "default/httpd-1", "protocol": "TCP", "port": 80}`

func benchSnapshot(b *testing.B) (map[string]any, policylib.Snapshot) {
	set, err := manifest.Load(seedDir+"/cluster", seedDir+"/original/networkpolicy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	snap := policylib.Snapshot{Namespaces: set.Namespaces, Nodes: set.Nodes, Pods: set.Pods, Services: set.Services, Policies: set.NetworkPolicies}
	return seedSnapshot(b, "networkpolicy.yaml"), snap
}

func prepareDecide(b *testing.B, query string) rego.PreparedEvalQuery {
	opts := append([]func(*rego.Rego){rego.Query(query), rego.StrictBuiltinErrors(true)}, Functions()...)
	pq, err := rego.New(opts...).PrepareForEval(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return pq
}

// BenchmarkDecideRego is one query making one podwall.decide call: the
// snapshot (an already-parsed input) is compiled into an engine each time,
// since the cache lives for one query.
func BenchmarkDecideRego(b *testing.B) {
	in, _ := benchSnapshot(b)
	input, err := ast.InterfaceToValue(in)
	if err != nil {
		b.Fatal(err)
	}
	pq := prepareDecide(b, "x := podwall.decide(input, "+benchFlow+").allowed")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		rs, err := pq.Eval(ctx, rego.EvalParsedInput(input))
		if err != nil || rs[0].Bindings["x"] != false {
			b.Fatal(rs, err)
		}
	}
}

// BenchmarkDecideRegoCached is the per-decision cost when one query makes
// 100 decisions against one snapshot (as protectedAccess does): the engine
// is built once per query.
func BenchmarkDecideRegoCached(b *testing.B) {
	in, _ := benchSnapshot(b)
	input, err := ast.InterfaceToValue(in)
	if err != nil {
		b.Fatal(err)
	}
	pq := prepareDecide(b, "x := count([d | some i in numbers.range(1, 100); d := podwall.decide(input, "+
		`{"from": "default/busybox", "to": "default/httpd-1", "protocol": "TCP", "port": i}`+")])")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		rs, err := pq.Eval(ctx, rego.EvalParsedInput(input))
		if err != nil || len(rs) != 1 {
			b.Fatal(rs, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100, "ns/decision")
}

// BenchmarkDecidePolicylibBuildExplain is what podwall.decide does per
// query, in Go: build the engine and explain one flow.
func BenchmarkDecidePolicylibBuildExplain(b *testing.B) {
	_, snap := benchSnapshot(b)
	flow := policylib.Flow{From: policylib.PodEndpoint("default", "busybox"), To: policylib.PodEndpoint("default", "httpd-1"), Protocol: policylib.TCP, Port: 80}
	b.ReportAllocs()
	for b.Loop() {
		eng, err := policylib.Build(snap)
		if err != nil {
			b.Fatal(err)
		}
		x, err := eng.Explain(flow)
		if err != nil || x.Decision.Allowed {
			b.Fatal(x, err)
		}
	}
}

// BenchmarkDecidePolicylibExplain and BenchmarkDecidePolicylibDecide are
// policylib on a built engine: the floor.
func BenchmarkDecidePolicylibExplain(b *testing.B) {
	_, snap := benchSnapshot(b)
	eng, err := policylib.Build(snap)
	if err != nil {
		b.Fatal(err)
	}
	flow := policylib.Flow{From: policylib.PodEndpoint("default", "busybox"), To: policylib.PodEndpoint("default", "httpd-1"), Protocol: policylib.TCP, Port: 80}
	b.ReportAllocs()
	for b.Loop() {
		if x, err := eng.Explain(flow); err != nil || x.Decision.Allowed {
			b.Fatal(x, err)
		}
	}
}

func BenchmarkDecidePolicylibDecide(b *testing.B) {
	_, snap := benchSnapshot(b)
	eng, err := policylib.Build(snap)
	if err != nil {
		b.Fatal(err)
	}
	flow := policylib.Flow{From: policylib.PodEndpoint("default", "busybox"), To: policylib.PodEndpoint("default", "httpd-1"), Protocol: policylib.TCP, Port: 80}
	b.ReportAllocs()
	for b.Loop() {
		if d, err := eng.Decide(flow); err != nil || d.Allowed {
			b.Fatal(d, err)
		}
	}
}

package rules

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/types"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podwall/podwall/manifest"
	"github.com/podwall/podwall/policylib"
)

// requiredLabelsEvaluator is an Evaluator with only requiredLabels
// configured.
func requiredLabelsEvaluator(b *testing.B) *Evaluator {
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
	return ev
}

// BenchmarkEvalRequiredLabels is one webhook evaluation of a Pod CREATE
// with only requiredLabels configured: build the input from the request,
// evaluate deny, warn, dryrun and patch, read the results. Target: median
// <= 50µs.
func BenchmarkEvalRequiredLabels(b *testing.B) {
	ctx := context.Background()
	ev := requiredLabelsEvaluator(b)
	req := request(b, admissionv1.Create, "Pod", pod("web", map[string]string{"app.kubernetes.io/name": "web", "team": "ops"}), nil)
	b.ReportAllocs()
	for b.Loop() {
		res, err := ev.Eval(ctx, req)
		if err != nil || len(res.Violations) != 1 {
			b.Fatal(res, err)
		}
	}
}

// BenchmarkEvalRequiredLabelsJSON is the same evaluation from the
// AdmissionReview's JSON, as the webhook receives it (EvalReviewJSON).
func BenchmarkEvalRequiredLabelsJSON(b *testing.B) {
	ctx := context.Background()
	ev := requiredLabelsEvaluator(b)
	req := request(b, admissionv1.Create, "Pod", pod("web", map[string]string{"app.kubernetes.io/name": "web", "team": "ops"}), nil)
	body, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: req})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		res, err := ev.EvalReviewJSON(ctx, body)
		if err != nil || len(res.Violations) != 1 {
			b.Fatal(res, err)
		}
	}
}

// BenchmarkEvalNoFamilies is the same request with no family configured:
// the fixed cost of an evaluation (the input, the four entry points, the
// results), which every configured family adds to.
func BenchmarkEvalNoFamilies(b *testing.B) {
	ctx := context.Background()
	ev, err := NewEvaluator(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := ev.SetConfig(ctx, map[string]any{"apiVersion": "podwall.io/v1alpha1", "kind": "AdmissionConfiguration", "rules": map[string]any{}}); err != nil {
		b.Fatal(err)
	}
	req := request(b, admissionv1.Create, "Pod", pod("web", map[string]string{"app.kubernetes.io/name": "web", "team": "ops"}), nil)
	b.ReportAllocs()
	for b.Loop() {
		res, err := ev.Eval(ctx, req)
		if err != nil || !res.Allowed() {
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

// BenchmarkEvalRBACSample is the role-based access control example of OPA's
// documentation (a user's roles from data, each role's grants, the request
// matched against them): the anchor for what an evaluation of a small
// policy costs on the machine at hand, which OPA's docs put at ~45µs.
func BenchmarkEvalRBACSample(b *testing.B) {
	const policy = `package app.rbac

default allow := false

allow if user_is_admin

allow if {
	some grant in user_is_granted
	input.action == grant.action
	input.type == grant.type
}

user_is_admin if "admin" in data.user_roles[input.user]

user_is_granted contains grant if {
	some role in data.user_roles[input.user]
	some grant in data.role_grants[role]
}
`
	const data = `{
  "user_roles": {"alice": ["admin"], "bob": ["employee", "billing"], "eve": ["customer"]},
  "role_grants": {
    "customer": [{"action": "read", "type": "dog"}, {"action": "read", "type": "cat"}, {"action": "adopt", "type": "dog"}, {"action": "adopt", "type": "cat"}],
    "employee": [{"action": "read", "type": "dog"}, {"action": "read", "type": "cat"}, {"action": "update", "type": "dog"}, {"action": "update", "type": "cat"}],
    "billing": [{"action": "read", "type": "finance"}, {"action": "update", "type": "finance"}]
  }
}`
	var d map[string]any
	if err := json.Unmarshal([]byte(data), &d); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	pq, err := rego.New(rego.Store(inmem.NewFromObject(d)), rego.Module("rbac.rego", policy), rego.Query("data.app.rbac.allow")).PrepareForEval(ctx)
	if err != nil {
		b.Fatal(err)
	}
	input := ast.MustParseTerm(`{"user": "bob", "action": "read", "type": "finance"}`).Value
	b.ReportAllocs()
	for b.Loop() {
		if rs, err := pq.Eval(ctx, rego.EvalParsedInput(input)); err != nil || !rs.Allowed() {
			b.Fatal(rs, err)
		}
	}
}

// BenchmarkEvalGatekeeperStyleRequiredLabels is the second anchor: the
// required-labels check as Gatekeeper's library writes it (a
// ConstraintTemplate's violation rules: the missing keys as one set
// difference, each present label against its allowed pattern), on the same
// Pod CREATE, its input built from the request in the loop as Eval builds
// ours. It has none of what podwall's rule adds on the same request: the
// scope (kinds, workloads' pod templates, namespaces, exemptions,
// selectors), defaults and their patch, tolerating on UPDATE what the old
// object had, enforcement actions, and the four entry points (deny, warn,
// dryrun, patch). Gatekeeper itself does the matching and the actions in
// Go, outside Rego.
func BenchmarkEvalGatekeeperStyleRequiredLabels(b *testing.B) {
	const policy = `package k8srequiredlabels

message(parameters, fallback) := parameters.message

message(parameters, fallback) := fallback if not parameters.message

violation contains {"msg": msg, "details": {"missing_labels": missing}} if {
	provided := {label | input.review.object.metadata.labels[label]}
	required := {label | label := input.parameters.labels[_].key}
	missing := required - provided
	count(missing) > 0
	msg := message(input.parameters, sprintf("you must provide labels: %v", [missing]))
}

violation contains {"msg": msg} if {
	value := input.review.object.metadata.labels[key]
	expected := input.parameters.labels[_]
	expected.key == key
	expected.allowedRegex != ""
	not regex.match(expected.allowedRegex, value)
	msg := message(input.parameters, sprintf("Label <%v: %v> does not satisfy allowed regex: %v", [key, value, expected.allowedRegex]))
}
`
	ctx := context.Background()
	pq, err := rego.New(rego.Module("k8srequiredlabels.rego", policy), rego.Query("data.k8srequiredlabels.violation")).PrepareForEval(ctx)
	if err != nil {
		b.Fatal(err)
	}
	params := ast.NewTerm(ast.MustParseTerm(`{"labels": [{"key": "app.kubernetes.io/name"}, {"key": "team", "allowedRegex": "^(web|data)$"}]}`).Value)
	req := request(b, admissionv1.Create, "Pod", pod("web", map[string]string{"app.kubernetes.io/name": "web", "team": "ops"}), nil)
	b.ReportAllocs()
	for b.Loop() {
		review, err := requestValue(req)
		if err != nil {
			b.Fatal(err)
		}
		input := ast.NewObject(ast.Item(ast.InternedTerm("review"), ast.NewTerm(review)), ast.Item(ast.InternedTerm("parameters"), params))
		rs, err := pq.Eval(ctx, rego.EvalParsedInput(input))
		if err != nil || len(rs) != 1 || len(rs[0].Expressions[0].Value.([]any)) != 1 {
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
// busybox -> httpd-1 TCP/80 (denied). The claim they support is
//
//	DecideRegoCached (ns/decision) <= 2 x (DecidePolicylibExplainText + DecideCallOverhead (ns/decision))
//
// that is, a decision through the built-in costs at most twice what
// policylib's answer (the explanation with its text, which is what the
// built-in returns) costs in Go plus what OPA charges for calling any
// custom built-in that way.

const benchFlow = `{"from": "default/busybox", "to": "default/httpd-1", "protocol": "TCP", "port": 80}`

// benchDecideQuery makes 100 decisions against one snapshot (the input),
// as protectedAccess does, with fn the built-in.
func benchDecideQuery(fn string) string {
	return "x := count([d | some i in numbers.range(1, 100); d := " + fn + "(input, " +
		`{"from": "default/busybox", "to": "default/httpd-1", "protocol": "TCP", "port": i}` + ")])"
}

func benchSnapshot(b *testing.B) (map[string]any, policylib.Snapshot) {
	set, err := manifest.Load(seedDir+"/cluster", seedDir+"/original/networkpolicy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	snap := policylib.Snapshot{Namespaces: set.Namespaces, Nodes: set.Nodes, Pods: set.Pods, Services: set.Services, Policies: set.NetworkPolicies}
	return seedSnapshot(b, "networkpolicy.yaml"), snap
}

func prepareDecide(b *testing.B, query string, extra ...func(*rego.Rego)) rego.PreparedEvalQuery {
	opts := append([]func(*rego.Rego){rego.Query(query), rego.StrictBuiltinErrors(true)}, Functions()...)
	pq, err := rego.New(append(opts, extra...)...).PrepareForEval(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return pq
}

// BenchmarkDecideRego is one query making one podwall.decide call on the
// snapshot of the previous query: the engine comes from the recent ones
// (recentEngines).
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

// BenchmarkDecideRegoCompile is one query making one podwall.decide call
// on a snapshot compiled for it: three seed stages by turns, one more than
// recentEngines keeps. Its Kubernetes objects were decoded before
// (decodeObject keeps them), as a cluster's are after the first request.
func BenchmarkDecideRegoCompile(b *testing.B) {
	var inputs []ast.Value
	for _, policies := range [][]string{nil, {"networkpolicy.yaml"}, {"networkpolicy-ipblock.yaml"}} {
		v, err := ast.InterfaceToValue(map[string]any{"s": seedSnapshot(b, policies...)})
		if err != nil {
			b.Fatal(err)
		}
		inputs = append(inputs, v)
	}
	pq := prepareDecide(b, "x := podwall.decide(input.s, "+benchFlow+").allowed")
	ctx := context.Background()
	recentEngines.mu.Lock()
	recentEngines.entries = nil // what earlier benchmarks compiled
	recentEngines.mu.Unlock()
	before := engineCompiles.Load()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pq.Eval(ctx, rego.EvalParsedInput(inputs[i%len(inputs)])); err != nil {
			b.Fatal(err)
		}
		i++
	}
	if n := engineCompiles.Load() - before; n != int64(i) {
		b.Fatalf("%d queries compiled %d engines", i, n)
	}
}

// BenchmarkDecideRegoCached is the per-decision cost when one query makes
// 100 decisions against one snapshot (as protectedAccess does), the
// snapshot's engine ready (compiled by an earlier query).
func BenchmarkDecideRegoCached(b *testing.B) {
	in, _ := benchSnapshot(b)
	input, err := ast.InterfaceToValue(in)
	if err != nil {
		b.Fatal(err)
	}
	pq := prepareDecide(b, benchDecideQuery("podwall.decide"))
	benchDecisions(b, pq, input)
}

// benchDecisions evaluates a query of 100 decisions per run and reports
// the time per decision.
func benchDecisions(b *testing.B, pq rego.PreparedEvalQuery, input ast.Value) {
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

// BenchmarkDecideCallOverhead is BenchmarkDecideRegoCached's query calling
// a custom built-in of podwall.decide's signature that does nothing but
// return a decision made beforehand: what OPA charges per call (the
// comprehension, the flow argument, the call, the result), with no
// decision in it.
func BenchmarkDecideCallOverhead(b *testing.B) {
	in, snap := benchSnapshot(b)
	input, err := ast.InterfaceToValue(in)
	if err != nil {
		b.Fatal(err)
	}
	eng, err := policylib.Build(snap)
	if err != nil {
		b.Fatal(err)
	}
	x, err := eng.Explain(policylib.Flow{From: policylib.PodEndpoint("default", "busybox"), To: policylib.PodEndpoint("default", "httpd-1"), Protocol: policylib.TCP, Port: 80})
	if err != nil {
		b.Fatal(err)
	}
	decision := (&compiledSnapshot{eng: eng, sides: map[sideKey]*ast.Term{}}).explanationTerm(x)
	var decl *types.Function
	for _, bi := range builtinTable {
		if bi.name == "podwall.decide" {
			decl = bi.decl
		}
	}
	noop := rego.FunctionDyn(&rego.Function{Name: "bench.decide_nothing", Decl: decl},
		func(_ rego.BuiltinContext, _ []*ast.Term) (*ast.Term, error) { return decision, nil })
	pq := prepareDecide(b, benchDecideQuery("bench.decide_nothing"), noop)
	benchDecisions(b, pq, input)
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

// BenchmarkDecidePolicylibExplainText is policylib's answer to what
// podwall.decide returns, on a built engine: the explanation and its text
// (the decision's reasons).
func BenchmarkDecidePolicylibExplainText(b *testing.B) {
	_, snap := benchSnapshot(b)
	eng, err := policylib.Build(snap)
	if err != nil {
		b.Fatal(err)
	}
	flow := policylib.Flow{From: policylib.PodEndpoint("default", "busybox"), To: policylib.PodEndpoint("default", "httpd-1"), Protocol: policylib.TCP, Port: 80}
	b.ReportAllocs()
	for b.Loop() {
		x, err := eng.Explain(flow)
		if err != nil || x.Decision.Allowed || x.String() == "" {
			b.Fatal(x, err)
		}
	}
}

// BenchmarkDecidePolicylibExplain and BenchmarkDecidePolicylibDecide are
// policylib on a built engine without the text: the floor.
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

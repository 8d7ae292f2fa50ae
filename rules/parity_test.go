package rules_test

// The parity test of issue 4: a corpus of admission requests, each with its
// cluster state and configuration, gets the same decision from the Go rules
// (webhook/rules, every rule's engine go) and from the Rego rules (this
// package, the same configuration with engine rego, in data.podwall.config,
// and the cluster in data.kubernetes in kube-mgmt's layout).
//
// The Go side runs as the API server runs the webhooks: Mutate, apply its
// patches, then Validate the patched object. The Rego side is one Eval,
// which judges a CREATE as if its own default-label patch were applied.
// For each case the two must agree on:
//
//   - allowed or denied;
//   - the set of (rule, action) pairs found, and, finer, the multiset of
//     (rule, action, code, field) findings (data.podwall.admission.violations
//     on the Rego side);
//   - the object after mutation (each side's JSON patch applied to the
//     object sent; the documents are compared, not the patch operations).
//
// The Rego side is run three times per case: in one evaluation for both
// webhooks (as OPA serving the bundle does) with the configuration as
// written (so the Rego applies its own defaults) and with the configuration
// as webhook/config defaults it, marshalled from its Go type; and through
// the webhook's Rego side, mutating then validating, as the API server
// calls it.
//
// The corpus is the hand-written cases of testdata/parity/*.parity (YAML:
// the seed scenario step by step, malformed objects, edge cases; see the
// README.md there), the generated matrix of corpusMatrix (each rule ×
// action × kind × operation, selectors, exemptions) and a randomized label
// corpus with a fixed seed. With -short, every seventh generated case runs.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	goruntime "runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/podwall/podwall/manifest"
	"github.com/podwall/podwall/rules"
	"github.com/podwall/podwall/webhook/config"
	gorules "github.com/podwall/podwall/webhook/rules"
	"github.com/podwall/podwall/webhook/server"
)

const (
	// repoRoot is where paths in the YAML corpus are relative to.
	repoRoot  = ".."
	parityDir = "testdata/parity"
)

// parityCase is one request of the corpus.
type parityCase struct {
	name string
	// cfg is an AdmissionConfiguration document (YAML or JSON).
	cfg string
	// objs is the cluster state: Namespaces, Pods, Services and
	// NetworkPolicies.
	objs []runtime.Object
	req  *admissionv1.AdmissionRequest
	// allowedOnly compares the decision alone: for objects the Go rules
	// cannot decode (they refuse them as rule "podwall") while the Rego
	// reads what it can.
	allowedOnly bool
	// expect, when set, is what both sides must say.
	expect *expectation
}

// expectation pins a case's outcome, so that the two sides cannot agree on
// a wrong answer.
type expectation struct {
	Allowed *bool `json:"allowed,omitempty"`
	// Violations are "action rule code", in any order; nil: not checked,
	// empty: none.
	Violations []string `json:"violations,omitempty"`
	// Labels are labels the object must carry after mutation (the pod's,
	// or the pod template's), with "-" for a label that must be absent.
	Labels map[string]string `json:"labels,omitempty"`
}

// finding is one violation, on either side.
type finding struct {
	Rule, Action, Code, Field, Message string
}

func (f finding) key() string { return f.Action + " " + f.Rule + " " + f.Code + " " + f.Field }

// outcome is one side's answer for one case.
type outcome struct {
	Allowed  bool
	Findings []finding
	Warnings []string
	// Patched is the object after the side's patch, as generic JSON; nil
	// when the request carries no object.
	Patched any
}

func (o outcome) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "allowed: %v\n", o.Allowed)
	for _, f := range o.Findings {
		fmt.Fprintf(&b, "  %s %s %s", f.Action, f.Rule, f.Code)
		if f.Field != "" {
			fmt.Fprintf(&b, " [%s]", f.Field)
		}
		fmt.Fprintf(&b, ": %s\n", strings.ReplaceAll(f.Message, "\n", "\n      "))
	}
	for _, w := range o.Warnings {
		fmt.Fprintf(&b, "  warning: %s\n", w)
	}
	if o.Patched != nil {
		p, _ := json.Marshal(o.Patched)
		fmt.Fprintf(&b, "  object after mutation: %s\n", p)
	}
	return b.String()
}

func (o outcome) keys() []string {
	out := make([]string, len(o.Findings))
	for i, f := range o.Findings {
		out[i] = f.key()
	}
	sort.Strings(out)
	return out
}

func (o outcome) pairs() []string {
	set := map[string]bool{}
	for _, f := range o.Findings {
		set[f.Action+" "+f.Rule] = true
	}
	return slices.Sorted(maps.Keys(set))
}

func (o outcome) codes() []string {
	out := make([]string, len(o.Findings))
	for i, f := range o.Findings {
		out[i] = f.Action + " " + f.Rule + " " + f.Code
	}
	sort.Strings(out)
	return out
}

// TestParity runs the whole corpus through both engines.
func TestParity(t *testing.T) {
	cases := loadCorpus(t)
	generated := append(corpusMatrix(t), corpusRandomLabels(t, 1, 300)...)
	if testing.Short() {
		// The hand-written corpus, and every seventh generated case.
		for i := 0; i < len(generated); i += 7 {
			cases = append(cases, generated[i])
		}
	} else {
		cases = append(cases, generated...)
	}
	st := &corpusState{configs: map[string]*parsedConfig{}}
	seen := map[string]bool{}
	for _, c := range cases {
		if seen[c.name] {
			t.Fatalf("two cases named %q", c.name)
		}
		seen[c.name] = true
		st.config(t, c.cfg) // parsed once, before the cases run in parallel
	}
	t.Logf("parity corpus: %d cases, %d configurations", len(cases), len(st.configs))
	// Each worker has its own Rego Evaluator, whose store it rewrites for
	// each case.
	pool := make(chan *harness, goruntime.GOMAXPROCS(0))
	for range cap(pool) {
		pool <- newHarness(t, st)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := <-pool
			defer func() { pool <- h }()
			h.check(t, c)
		})
	}
}

// TestParityConfigMarshal checks that the configuration, marshalled from
// webhook/config's type as the webhook hands it to the Rego
// (Evaluator.SetConfig), reads back as the same configuration.
func TestParityConfigMarshal(t *testing.T) {
	for _, doc := range []string{
		"exemptNamespaces: []\nrules:\n  networkPolicyHygiene: {}\n",
		"exemptNamespaces: [team-a]\nrules:\n  networkPolicyHygiene: {}\n",
		"rules:\n  networkPolicyHygiene: {}\n",
	} {
		cfg, err := config.Parse([]byte("apiVersion: podwall.io/v1alpha1\nkind: AdmissionConfiguration\n"+doc), "test")
		if err != nil {
			t.Fatal(err)
		}
		back, err := config.Parse(mustMarshal(t, cfg), "marshalled")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, cfg) {
			t.Errorf("%s: marshalled and parsed back: %+v, want %+v", doc, back, cfg)
		}
	}
}

// corpusState holds what the cases share: each configuration parsed, and
// its Go Evaluator. It is filled before the cases run.
type corpusState struct {
	configs map[string]*parsedConfig
}

// parsedConfig is one configuration in its forms.
type parsedConfig struct {
	goEval *gorules.Evaluator // every rule's engine go
	// regoRaw is the document as written with engine rego; regoDefaulted
	// the configuration as webhook/config defaults it, with engine rego,
	// marshalled from its Go type (as the webhook would hand it over).
	regoRaw, regoDefaulted map[string]any
	// regoTyped is the configuration with engine rego as the webhook holds
	// it, for its Rego side.
	regoTyped *config.AdmissionConfiguration
}

// harness is one worker: a Rego Evaluator and the query of the
// violations (with their codes and fields) on the same bundle and store.
type harness struct {
	ctx        context.Context
	st         *corpusState
	rego       *rules.Evaluator
	violations rego.PreparedEvalQuery // data.podwall.admission.violations
	combined   rego.PreparedEvalQuery // the Evaluator's query and the violations
	// sides is the webhook's Rego side, which evaluates the mutating and
	// the validating webhook's requests apart (input.podwall.webhook).
	sides *server.RegoRules
}

func newHarness(t *testing.T, st *corpusState) *harness {
	ctx := context.Background()
	ev, err := rules.NewEvaluator(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := rules.Bundle("")
	if err != nil {
		t.Fatal(err)
	}
	mods := map[string]*ast.Module{}
	for _, mf := range b.Modules {
		m := mf.Parsed
		if m == nil {
			if m, err = ast.ParseModuleWithOpts(mf.Path, string(mf.Raw), ast.ParserOptions{RegoVersion: ast.RegoV1}); err != nil {
				t.Fatal(err)
			}
		}
		mods[mf.Path] = m
	}
	c := ast.NewCompiler().WithCapabilities(rules.Capabilities()).WithDefaultRegoVersion(ast.RegoV1)
	if c.Compile(mods); c.Failed() {
		t.Fatal(c.Errors)
	}
	prepare := func(query string) rego.PreparedEvalQuery {
		opts := append([]func(*rego.Rego){
			rego.Compiler(c),
			rego.Store(ev.Store()),
			rego.Query(query),
			rego.StrictBuiltinErrors(true),
		}, rules.Functions()...)
		pq, err := rego.New(opts...).PrepareForEval(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return pq
	}
	sides, err := server.NewRegoRules(ctx, nil, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	return &harness{ctx: ctx, st: st, rego: ev, sides: sides,
		violations: prepare("v := data.podwall.admission.violations"),
		combined: prepare("deny := data.podwall.admission.deny; warn := data.podwall.admission.warn; " +
			"dryrun := data.podwall.admission.dryrun; patch := data.podwall.admission.patch; v := data.podwall.admission.violations"),
	}
}

// config parses a configuration document (apiVersion and kind may be left
// out) and builds its Go Evaluator, once.
func (st *corpusState) config(t testing.TB, doc string) *parsedConfig {
	t.Helper()
	if pc, ok := st.configs[doc]; ok {
		return pc
	}
	var raw map[string]any
	if err := yaml.Unmarshal([]byte(doc), &raw); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	if raw["apiVersion"] == nil && raw["kind"] == nil {
		raw["apiVersion"], raw["kind"] = config.APIVersion, config.Kind
	}
	full := mustMarshal(t, raw)
	cfg, err := config.Parse(full, "parity config")
	if err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	goCfg, regoCfg := withEngine(cfg, config.EngineGo), withEngine(cfg, config.EngineRego)
	pc := &parsedConfig{}
	if pc.goEval, err = gorules.New(goCfg); err != nil {
		t.Fatal(err)
	}
	// With every engine rego the Go evaluator must leave every rule alone.
	if r, err := gorules.New(regoCfg); err != nil || len(r.Rules()) != 0 {
		t.Fatalf("the Go evaluator with engine rego evaluates %v (%v)", r.Rules(), err)
	}
	if err := json.Unmarshal(full, &pc.regoRaw); err != nil {
		t.Fatal(err)
	}
	if rs, ok := pc.regoRaw["rules"].(map[string]any); ok {
		for _, r := range rs {
			if r, ok := r.(map[string]any); ok {
				r["engine"] = string(config.EngineRego)
			}
		}
	}
	if err := json.Unmarshal(mustMarshal(t, regoCfg), &pc.regoDefaulted); err != nil {
		t.Fatal(err)
	}
	pc.regoTyped = regoCfg
	st.configs[doc] = pc
	return pc
}

// withEngine is a copy of cfg with every rule on engine e, but
// protectedAccess, which only the Rego implements (and which the
// comparison leaves out).
func withEngine(cfg *config.AdmissionConfiguration, e config.Engine) *config.AdmissionConfiguration {
	cfg = cfg.DeepCopy()
	if r := cfg.Rules.RequiredLabels; r != nil {
		r.Engine = e
	}
	if r := cfg.Rules.DefaultDeny; r != nil {
		r.Engine = e
	}
	if r := cfg.Rules.NetworkPolicyHygiene; r != nil {
		r.Engine = e
	}
	return cfg
}

// compared are the rules both sides implement.
var compared = map[string]bool{
	config.RuleRequiredLabels:       true,
	config.RuleDefaultDeny:          true,
	config.RuleNetworkPolicyHygiene: true,
}

func (h *harness) check(t *testing.T, c parityCase) {
	pc := h.st.configs[c.cfg]
	goOut := h.runGo(t, pc.goEval, c)
	variants := []struct {
		name         string
		cfg          any
		viaEvaluator bool
	}{{"config as written", pc.regoRaw, true}, {"config as webhook/config defaults it", pc.regoDefaulted, false}}
	for _, v := range variants {
		regoOut := h.runRego(t, c, v.cfg, v.viaEvaluator)
		if diffs := compare(c, goOut, regoOut); len(diffs) > 0 {
			t.Errorf("case %q: Go and Rego (%s) disagree: %s\nrequest: %s\n--- Go (mutate, then validate the patched object):\n%s--- Rego:\n%s",
				c.name, v.name, strings.Join(diffs, "; "), describeRequest(c.req), goOut, regoOut)
		}
	}
	sidesOut := h.runSides(t, c, pc.regoTyped)
	if diffs := compare(c, goOut, sidesOut); len(diffs) > 0 {
		t.Errorf("case %q: Go and the webhook's Rego side disagree: %s\nrequest: %s\n--- Go (mutate, then validate the patched object):\n%s--- Rego side (the same):\n%s",
			c.name, strings.Join(diffs, "; "), describeRequest(c.req), goOut, sidesOut)
	}
	if c.expect != nil {
		checkExpectation(t, c, goOut)
	}
}

func compare(c parityCase, g, r outcome) []string {
	var diffs []string
	if g.Allowed != r.Allowed {
		diffs = append(diffs, fmt.Sprintf("allowed: Go %v, Rego %v", g.Allowed, r.Allowed))
	}
	if c.allowedOnly {
		return diffs
	}
	if gp, rp := g.pairs(), r.pairs(); !slices.Equal(gp, rp) {
		diffs = append(diffs, fmt.Sprintf("(rule, action) pairs: Go %q, Rego %q", gp, rp))
	} else if gk, rk := g.keys(), r.keys(); !slices.Equal(gk, rk) {
		diffs = append(diffs, fmt.Sprintf("findings (action rule code field): Go %q, Rego %q", gk, rk))
	}
	if !reflect.DeepEqual(g.Patched, r.Patched) {
		diffs = append(diffs, "the objects after mutation differ")
	}
	if gn, rn := g.patchNotes(), r.patchNotes(); !slices.Equal(gn, rn) {
		diffs = append(diffs, fmt.Sprintf("notes about the patch: Go %q, Rego %q", gn, rn))
	}
	return diffs
}

// patchNotes are the warnings that say what the requiredLabels patch set,
// or why it set nothing: the same words from both sides.
func (o outcome) patchNotes() []string {
	var out []string
	for _, w := range o.Warnings {
		if strings.HasPrefix(w, "requiredLabels: set missing ") || strings.HasPrefix(w, "requiredLabels: not setting ") {
			out = append(out, w)
		}
	}
	slices.Sort(out)
	return out
}

func checkExpectation(t *testing.T, c parityCase, o outcome) {
	t.Helper()
	e := c.expect
	if e.Allowed != nil && *e.Allowed != o.Allowed {
		t.Errorf("case %q: allowed %v, want %v\n%s", c.name, o.Allowed, *e.Allowed, o)
	}
	if e.Violations != nil {
		want := slices.Clone(e.Violations)
		sort.Strings(want)
		if got := o.codes(); !slices.Equal(got, want) {
			t.Errorf("case %q: violations %q, want %q\n%s", c.name, got, want, o)
		}
	}
	if len(e.Labels) > 0 {
		got := labelsAfter(c.req.Kind.Kind, o.Patched)
		for k, v := range e.Labels {
			if g, ok := got[k]; (v == "-" && ok) || (v != "-" && g != v) {
				t.Errorf("case %q: labels after mutation %v, want %s=%s", c.name, got, k, v)
			}
		}
	}
}

// labelsAfter reads the labels the requiredLabels rule checks from a
// generic object.
func labelsAfter(kind string, obj any) map[string]any {
	path := []string{"spec", "template", "metadata", "labels"}
	switch kind {
	case "Pod":
		path = []string{"metadata", "labels"}
	case "CronJob":
		path = []string{"spec", "jobTemplate", "spec", "template", "metadata", "labels"}
	}
	cur := obj
	for _, p := range path {
		m, _ := cur.(map[string]any)
		cur = m[p]
	}
	m, _ := cur.(map[string]any)
	return m
}

// runGo is the API server's pipeline: the mutating webhook, its patches
// applied, then the validating webhook on the patched object.
func (h *harness) runGo(t *testing.T, e *gorules.Evaluator, c parityCase) outcome {
	t.Helper()
	cluster := gorules.NewMemoryCluster(c.objs...)
	return mutateThenValidate(t, "Go", c.req,
		func(req *admissionv1.AdmissionRequest) gorules.Result { return e.Mutate(h.ctx, req, cluster) },
		func(req *admissionv1.AdmissionRequest) gorules.Result { return e.Validate(h.ctx, req, cluster) },
		func(string) bool { return true })
}

// mutateThenValidate is what the API server does with the webhook pair: the
// mutating side's patch applied to the object, then the validating side on
// the result. The outcome holds the findings of the rules kept; the request
// is allowed when none of them denies.
func mutateThenValidate(t *testing.T, side string, req *admissionv1.AdmissionRequest,
	mutate, validate func(*admissionv1.AdmissionRequest) gorules.Result, keep func(rule string) bool) outcome {
	t.Helper()
	m := mutate(req)
	req = req.DeepCopy()
	out := outcome{Allowed: true}
	if len(req.Object.Raw) > 0 {
		patch, err := json.Marshal(m.Patches)
		if err != nil {
			t.Fatal(err)
		}
		doc := applyPatch(t, side, req.Object.Raw, patch)
		req.Object.Raw = doc
		out.Patched = generic(t, doc)
	}
	v := validate(req)
	for _, r := range []gorules.Result{m, v} {
		for _, x := range r.Violations {
			if !keep(x.Rule) {
				continue
			}
			out.Findings = append(out.Findings, finding{Rule: x.Rule, Action: string(x.Action), Code: x.Code, Field: x.Field, Message: x.Message})
			if x.Action == config.Deny {
				out.Allowed = false
			}
		}
		out.Warnings = append(out.Warnings, r.Warnings...)
	}
	sortFindings(out.Findings)
	return out
}

// runSides runs the request through the webhook's Rego side as the API
// server would: the mutating webhook's evaluation, its patch applied, then
// the validating webhook's on the patched object, as runGo does with the
// Go rules.
func (h *harness) runSides(t *testing.T, c parityCase, cfg *config.AdmissionConfiguration) outcome {
	t.Helper()
	if err := h.sides.SetConfig(h.ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := h.sides.Evaluator().SetData(h.ctx, rules.KubernetesPath, kubeMgmt(c.objs)); err != nil {
		t.Fatal(err)
	}
	side := func(run func(context.Context, *config.AdmissionConfiguration, *admissionv1.AdmissionRequest, *gorules.Result)) func(*admissionv1.AdmissionRequest) gorules.Result {
		return func(req *admissionv1.AdmissionRequest) gorules.Result {
			r := gorules.Result{Allowed: true}
			run(h.ctx, cfg, req, &r)
			return r
		}
	}
	// protectedAccess is left out: the Go rules have none.
	return mutateThenValidate(t, "Rego side", c.req, side(h.sides.Mutate), side(h.sides.Validate), func(rule string) bool { return compared[rule] })
}

// runRego writes cfg and the cluster state into the Evaluator's store and
// evaluates the request once.
func (h *harness) runRego(t *testing.T, c parityCase, cfg any, viaEvaluator bool) outcome {
	t.Helper()
	if err := h.rego.SetConfig(h.ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := h.rego.SetData(h.ctx, rules.KubernetesPath, kubeMgmt(c.objs)); err != nil {
		t.Fatal(err)
	}
	review := map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": generic(t, mustMarshal(t, c.req))}
	var res *rules.Result
	var vs []any
	if viaEvaluator {
		// Evaluator.Eval, one evaluation for both webhooks (as OPA serving
		// the bundle does); the violations (with their codes and fields)
		// from a second query.
		var err error
		if res, err = h.rego.Eval(h.ctx, c.req); err != nil {
			t.Fatalf("case %q: Rego: %v", c.name, err)
		}
		rs, err := h.violations.Eval(h.ctx, rego.EvalInput(review))
		if err != nil || len(rs) != 1 {
			t.Fatalf("case %q: Rego violations: %v (%d results)", c.name, err, len(rs))
		}
		vs, _ = rs[0].Bindings["v"].([]any)
	} else {
		// Everything from one query, the Evaluator's plus the violations.
		rs, err := h.combined.Eval(h.ctx, rego.EvalInput(review))
		if err != nil || len(rs) != 1 {
			t.Fatalf("case %q: Rego: %v (%d results)", c.name, err, len(rs))
		}
		b := rs[0].Bindings
		vs, _ = b["v"].([]any)
		res = &rules.Result{Violations: messagesOf(t, b["deny"]), Warnings: messagesOf(t, b["warn"]), DryRun: messagesOf(t, b["dryrun"])}
		for _, x := range b["patch"].([]any) {
			m := x.(map[string]any)
			res.Patch = append(res.Patch, rules.PatchOperation{Op: m["op"].(string), Path: m["path"].(string), Value: m["value"]})
		}
	}
	var out outcome
	if len(c.req.Object.Raw) > 0 {
		patch, err := res.PatchJSON()
		if err != nil {
			t.Fatal(err)
		}
		out.Patched = generic(t, applyPatch(t, "Rego", c.req.Object.Raw, patch))
	} else if len(res.Patch) > 0 {
		t.Errorf("case %q: Rego patches a request without an object: %v", c.name, res.Patch)
	}

	// The findings, with codes and fields.
	byAction := map[string][]rules.Message{}
	for _, x := range vs {
		m := x.(map[string]any)
		f := finding{Rule: m["rule"].(string), Action: m["action"].(string), Code: m["code"].(string), Field: m["field"].(string), Message: m["msg"].(string)}
		byAction[f.Action] = append(byAction[f.Action], rules.Message{Rule: f.Rule, Msg: f.Message, Code: f.Code, Field: f.Field})
		if compared[f.Rule] {
			out.Findings = append(out.Findings, f)
		}
	}
	sortFindings(out.Findings)

	// Eval's deny, warn and dryrun are the violations by action (warn also
	// has the note about the patch).
	var note []rules.Message
	for _, w := range res.Warnings {
		if w.Rule == config.RuleRequiredLabels && strings.HasPrefix(w.Msg, "requiredLabels: ") { // the note about the patch, as the webhook shows it
			note = append(note, w)
			out.Warnings = append(out.Warnings, w.Msg)
			continue
		}
		out.Warnings = append(out.Warnings, w.Rule+": "+w.Msg)
	}
	for action, got := range map[string][]rules.Message{"deny": res.Violations, "warn": res.Warnings, "dryrun": res.DryRun} {
		want := byAction[action]
		if action == "warn" {
			want = append(want, note...)
		}
		if !sameMessages(got, want) {
			t.Errorf("case %q: Rego %s is %v, but the violations with that action are %v", c.name, action, got, want)
		}
	}
	out.Allowed = true
	for _, f := range out.Findings {
		if f.Action == "deny" {
			out.Allowed = false
		}
	}
	if !res.Allowed() && out.Allowed {
		// Only a rule left out of the comparison denies.
		var others []string
		for _, m := range res.Violations {
			others = append(others, m.Rule)
		}
		t.Logf("case %q: denied by %v only, which the Go rules do not implement", c.name, others)
	}
	return out
}

func messagesOf(t *testing.T, v any) []rules.Message {
	t.Helper()
	var out []rules.Message
	for _, x := range v.([]any) {
		m := x.(map[string]any)
		code, _ := m["code"].(string) // the note about the patch has none
		field, _ := m["field"].(string)
		out = append(out, rules.Message{Rule: m["rule"].(string), Msg: m["msg"].(string), Code: code, Field: field})
	}
	return out
}

func sameMessages(a, b []rules.Message) bool {
	key := func(ms []rules.Message) []string {
		set := map[string]bool{}
		for _, m := range ms {
			set[m.Rule+"\x00"+m.Msg+"\x00"+m.Code+"\x00"+m.Field] = true
		}
		return slices.Sorted(maps.Keys(set))
	}
	return slices.Equal(key(a), key(b))
}

func sortFindings(fs []finding) {
	slices.SortFunc(fs, func(a, b finding) int {
		return strings.Compare(a.key()+"\x00"+a.Message, b.key()+"\x00"+b.Message)
	})
}

// kubeMgmt lays the cluster out as kube-mgmt replicates it:
// namespaces/NAME, pods/NAMESPACE/NAME, networkpolicies/NAMESPACE/NAME,
// services/NAMESPACE/NAME. Empty parts are left out (they count as empty).
func kubeMgmt(objs []runtime.Object) map[string]any {
	tree := map[string]any{}
	put := func(kind, ns, name string, o any) {
		if ns == "" {
			ns = metav1.NamespaceDefault
		}
		m, _ := tree[kind].(map[string]any)
		if m == nil {
			m = map[string]any{}
			tree[kind] = m
		}
		if kind == "namespaces" {
			m[name] = o
			return
		}
		n, _ := m[ns].(map[string]any)
		if n == nil {
			n = map[string]any{}
			m[ns] = n
		}
		n[name] = o
	}
	for _, obj := range objs {
		switch o := obj.(type) {
		case *corev1.Namespace:
			put("namespaces", "", o.Name, o)
		case *corev1.Pod:
			put("pods", o.Namespace, o.Name, o)
		case *networkingv1.NetworkPolicy:
			put("networkpolicies", o.Namespace, o.Name, o)
		case *corev1.Service:
			put("services", o.Namespace, o.Name, o)
		default:
			panic(fmt.Sprintf("cluster state holds a %T", obj))
		}
	}
	return tree
}

func applyPatch(t *testing.T, side string, doc, patch []byte) []byte {
	t.Helper()
	if len(patch) == 0 || string(patch) == "null" || string(patch) == "[]" {
		return doc
	}
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("%s patch %s: %v", side, patch, err)
	}
	out, err := p.Apply(doc)
	if err != nil {
		t.Fatalf("%s patch %s does not apply to %s: %v", side, patch, doc, err)
	}
	return out
}

func generic(t testing.TB, doc []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		t.Fatalf("%v: %s", err, doc)
	}
	return v
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func describeRequest(req *admissionv1.AdmissionRequest) string {
	s := fmt.Sprintf("%s %s/%s %s/%s", req.Operation, req.Kind.Group, req.Kind.Kind, req.Namespace, req.Name)
	if req.SubResource != "" {
		s += " subresource " + req.SubResource
	}
	if len(req.Object.Raw) > 0 {
		s += "\n  object: " + string(req.Object.Raw)
	}
	if len(req.OldObject.Raw) > 0 {
		s += "\n  oldObject: " + string(req.OldObject.Raw)
	}
	return s
}

// ---- the YAML corpus ----

// yamlCase is one case of a testdata/parity/*.parity file.
type yamlCase struct {
	Name string `json:"name"`
	// Config is a file name in testdata/parity/configs (without .parity),
	// "seed" or "podwall" (webhook/config's testdata), or an inline
	// document (apiVersion and kind may be left out).
	Config json.RawMessage `json:"config"`
	// Cluster lists objects inline, or manifest paths relative to the
	// repository root (workloads are expanded into their pods); a nested
	// list stands for its items.
	Cluster []json.RawMessage `json:"cluster,omitempty"`
	Request yamlRequest       `json:"request"`
	// Compare is "allowed" to compare the decision alone.
	Compare string       `json:"compare,omitempty"`
	Expect  *expectation `json:"expect,omitempty"`
}

type yamlRequest struct {
	Operation string `json:"operation"`
	// Kind is a kind name (group and version follow from it) or
	// {group, version, kind}; omitted: the object's.
	Kind        json.RawMessage `json:"kind,omitempty"`
	Namespace   *string         `json:"namespace,omitempty"` // omitted: the object's
	Name        *string         `json:"name,omitempty"`      // omitted: the object's
	SubResource string          `json:"subResource,omitempty"`
	// Object and OldObject are inline objects, or "PATH" (a file with one
	// object) or "PATH#Kind/name", relative to the repository root.
	Object    json.RawMessage `json:"object,omitempty"`
	OldObject json.RawMessage `json:"oldObject,omitempty"`
}

// corpusFile is one testdata/parity/*.parity file (YAML): fixtures (any
// YAML, for anchors the cases refer to) and the cases. The files are not
// named *.yaml because `podwall opa test rules/` loads every .json, .yaml
// and .yml file under rules/ as data.
type corpusFile struct {
	Fixtures any        `json:"fixtures,omitempty"`
	Cases    []yamlCase `json:"cases"`
}

func loadCorpus(t *testing.T) []parityCase {
	files, err := filepath.Glob(filepath.Join(parityDir, "*.parity"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus in %s: %v", parityDir, err)
	}
	var out []parityCase
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cf corpusFile
		if err := yaml.UnmarshalStrict(data, &cf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(cf.Cases) == 0 {
			t.Fatalf("%s: no cases", f)
		}
		for _, yc := range cf.Cases {
			c, err := yc.parityCase()
			if err != nil {
				t.Fatalf("%s: case %q: %v", f, yc.Name, err)
			}
			c.name = strings.TrimSuffix(filepath.Base(f), ".parity") + "/" + c.name
			out = append(out, c)
		}
	}
	return out
}

func (yc *yamlCase) parityCase() (parityCase, error) {
	c := parityCase{name: yc.Name, expect: yc.Expect}
	if yc.Name == "" {
		return c, errors.New("no name")
	}
	switch yc.Compare {
	case "":
	case "allowed":
		c.allowedOnly = true
	default:
		return c, fmt.Errorf("compare: %q: want allowed or nothing", yc.Compare)
	}
	var err error
	if c.cfg, err = configDoc(yc.Config); err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	if c.objs, err = clusterObjects(yc.Cluster); err != nil {
		return c, fmt.Errorf("cluster: %w", err)
	}
	if c.req, err = yc.Request.build(); err != nil {
		return c, fmt.Errorf("request: %w", err)
	}
	return c, nil
}

// configDoc resolves a case's config into a complete document.
func configDoc(raw json.RawMessage) (string, error) {
	var name string
	if err := json.Unmarshal(raw, &name); err == nil {
		path := filepath.Join(parityDir, "configs", name+".parity")
		if name == "seed" || name == "podwall" {
			path = filepath.Join(repoRoot, "webhook", "config", "testdata", name+".yaml")
		}
		b, err := os.ReadFile(path)
		return string(b), err
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil || doc == nil {
		return "", fmt.Errorf("want a name or a document, got %s", raw)
	}
	if _, ok := doc["apiVersion"]; !ok {
		doc["apiVersion"] = config.APIVersion
	}
	if _, ok := doc["kind"]; !ok {
		doc["kind"] = config.Kind
	}
	b, err := json.Marshal(doc)
	return string(b), err
}

// clusterObjects loads a case's cluster through the manifest package, as
// podwall's offline tools do.
func clusterObjects(entries []json.RawMessage) ([]runtime.Object, error) {
	set := &manifest.Set{}
	for i := 0; i < len(entries); i++ {
		e := entries[i]
		var nested []json.RawMessage
		if json.Unmarshal(e, &nested) == nil {
			// A list (a YAML alias of several objects) stands for its items.
			entries = slices.Insert(slices.Delete(slices.Clone(entries), i, i+1), i, nested...)
			i--
			continue
		}
		var part *manifest.Set
		var path string
		var err error
		if json.Unmarshal(e, &path) == nil {
			part, err = manifest.Load(filepath.Join(repoRoot, filepath.FromSlash(path)))
		} else {
			part, err = manifest.Read(bytes.NewReader(e), fmt.Sprintf("cluster[%d]", i))
		}
		if err != nil {
			return nil, err
		}
		if err := set.Merge(part); err != nil {
			return nil, err
		}
	}
	return setObjects(set)
}

func setObjects(set *manifest.Set) ([]runtime.Object, error) {
	if len(set.Others) > 0 {
		return nil, fmt.Errorf("the cluster state holds %d objects of other kinds", len(set.Others))
	}
	pods, err := set.AllPods()
	if err != nil {
		return nil, err
	}
	var objs []runtime.Object
	for _, o := range set.Namespaces {
		objs = append(objs, o)
	}
	for _, o := range pods {
		objs = append(objs, o)
	}
	for _, o := range set.Services {
		objs = append(objs, o)
	}
	for _, o := range set.NetworkPolicies {
		objs = append(objs, o)
	}
	return objs, nil
}

// kindGVKs are the group and version of each kind a request may name.
var kindGVKs = map[string]metav1.GroupVersionKind{
	"Pod":           {Version: "v1", Kind: "Pod"},
	"Deployment":    {Group: "apps", Version: "v1", Kind: "Deployment"},
	"ReplicaSet":    {Group: "apps", Version: "v1", Kind: "ReplicaSet"},
	"StatefulSet":   {Group: "apps", Version: "v1", Kind: "StatefulSet"},
	"DaemonSet":     {Group: "apps", Version: "v1", Kind: "DaemonSet"},
	"Job":           {Group: "batch", Version: "v1", Kind: "Job"},
	"CronJob":       {Group: "batch", Version: "v1", Kind: "CronJob"},
	"NetworkPolicy": {Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"},
	"Service":       {Version: "v1", Kind: "Service"},
	"ConfigMap":     {Version: "v1", Kind: "ConfigMap"},
	"Namespace":     {Version: "v1", Kind: "Namespace"},
}

func (r *yamlRequest) build() (*admissionv1.AdmissionRequest, error) {
	req := &admissionv1.AdmissionRequest{UID: "parity", Operation: admissionv1.Operation(r.Operation), SubResource: r.SubResource}
	obj, err := objectRef(r.Object)
	if err != nil {
		return nil, fmt.Errorf("object: %w", err)
	}
	old, err := objectRef(r.OldObject)
	if err != nil {
		return nil, fmt.Errorf("oldObject: %w", err)
	}
	var meta map[string]any // the object's, else the old one's
	for _, o := range []map[string]any{old, obj} {
		if o == nil {
			continue
		}
		meta, _ = o["metadata"].(map[string]any)
		if req.Kind.Kind == "" {
			if k, _ := o["kind"].(string); k != "" {
				req.Kind = kindGVKs[k]
			}
		}
	}
	if len(r.Kind) > 0 {
		var name string
		if json.Unmarshal(r.Kind, &name) == nil {
			gvk, ok := kindGVKs[name]
			if !ok {
				return nil, fmt.Errorf("kind %q: give {group, version, kind}", name)
			}
			req.Kind = gvk
		} else if err := json.Unmarshal(r.Kind, &req.Kind); err != nil {
			return nil, fmt.Errorf("kind: %w", err)
		}
	}
	if req.Kind.Kind == "" {
		return nil, errors.New("no kind")
	}
	req.Resource = metav1.GroupVersionResource{Group: req.Kind.Group, Version: req.Kind.Version, Resource: strings.ToLower(req.Kind.Kind) + "s"}
	if r.Namespace != nil {
		req.Namespace = *r.Namespace
	} else if ns, ok := meta["namespace"].(string); ok {
		req.Namespace = ns
	}
	if r.Name != nil {
		req.Name = *r.Name
	} else if n, ok := meta["name"].(string); ok {
		req.Name = n
	}
	if obj != nil {
		req.Object.Raw, _ = json.Marshal(obj)
	}
	if old != nil {
		req.OldObject.Raw, _ = json.Marshal(old)
	}
	return req, nil
}

// objectRef resolves an inline object or a "PATH[#Kind/name]" reference.
func objectRef(raw json.RawMessage) (map[string]any, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var ref string
	if json.Unmarshal(raw, &ref) != nil {
		var o map[string]any
		if err := json.Unmarshal(raw, &o); err != nil {
			return nil, err
		}
		return o, nil
	}
	path, sel, _ := strings.Cut(ref, "#")
	data, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(path)))
	if err != nil {
		return nil, err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var found []map[string]any
	for {
		var o map[string]any
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if o == nil {
			continue
		}
		md, _ := o["metadata"].(map[string]any)
		if sel == "" || sel == fmt.Sprintf("%v/%v", o["kind"], md["name"]) {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("%s: %d objects match, want 1", ref, len(found))
	}
	return found[0], nil
}

// ---- the generated corpus ----

// randomLabelsConfigs are the requiredLabels configurations the random
// corpus draws from.
var randomLabelsConfigs = []string{
	`rules:
  requiredLabels:
    enforcementAction: %s
    labels:
    - key: access
      allowedValues: ["true", "false"]
      default: "false"
    - key: app.kubernetes.io/name
`,
	`rules:
  requiredLabels:
    enforcementAction: %s
    labels:
    - key: team
      allowedValues: [web, data]
    - key: example.com/tier
      default: backend
`,
	`rules:
  requiredLabels:
    enforcementAction: %s
    match:
      objectSelector:
        matchExpressions:
        - {key: podwall.io/skip, operator: DoesNotExist}
    labels:
    - key: access
      allowedValues: ["true", "false"]
      default: "true"
    - key: team
      default: web
`,
}

// corpusRandomLabels draws n requests with random label sets (on the pod
// or pod template, on the object itself, and on the old object of an
// UPDATE) against the requiredLabels configurations, with a fixed seed.
func corpusRandomLabels(t *testing.T, seed uint64, n int) []parityCase {
	rnd := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	keys := []string{"access", "app.kubernetes.io/name", "team", "example.com/tier", "podwall.io/skip", "run"}
	values := []string{"true", "false", "maybe", "", "web", "data", "backend"}
	randLabels := func() map[string]string {
		if rnd.IntN(6) == 0 {
			return nil
		}
		m := map[string]string{}
		for _, k := range keys {
			if rnd.IntN(3) == 0 {
				m[k] = values[rnd.IntN(len(values))]
			}
		}
		return m
	}
	kinds := config.PodKinds()
	ops := []admissionv1.Operation{admissionv1.Create, admissionv1.Create, admissionv1.Update, admissionv1.Delete}
	var out []parityCase
	for i := range n {
		action := actions[rnd.IntN(len(actions))]
		cfg := fmt.Sprintf(randomLabelsConfigs[rnd.IntN(len(randomLabelsConfigs))], action)
		kind := kinds[rnd.IntN(len(kinds))]
		op := ops[rnd.IntN(len(ops))]
		ns := []string{"default", "team-a", "kube-system"}[rnd.IntN(3)]
		mk := func() runtime.Object {
			tl := randLabels()
			if kind == "Pod" {
				return podObj(ns, "p", tl)
			}
			return workloadObj(kind, ns, "w", tl, randLabels())
		}
		var obj, old runtime.Object
		switch op {
		case admissionv1.Create:
			obj = mk()
		case admissionv1.Update:
			obj, old = mk(), mk()
		case admissionv1.Delete:
			old = mk()
		}
		out = append(out, parityCase{
			name: fmt.Sprintf("random/%03d %s %s %s in %s", i, action, op, kind, ns),
			cfg:  cfg,
			objs: []runtime.Object{nsObj("default", nil), nsObj("team-a", map[string]string{"team": "a"})},
			req:  newRequest(t, op, obj, old),
		})
	}
	return out
}

// ---- builders ----

var actions = []config.EnforcementAction{config.Deny, config.Warn, config.DryRun}

func nsObj(name string, labels map[string]string) *corev1.Namespace {
	l := map[string]string{"kubernetes.io/metadata.name": name}
	maps.Copy(l, labels)
	return &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

func podObj(ns, name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolTCP}}}}},
	}
}

// workloadObj builds a workload of kind whose pod template has tmpl labels
// plus app=name, which its selector (but a Job's or CronJob's, left to the
// API server) requires; nil tmpl gives a template without labels. obj are
// the workload's own labels.
func workloadObj(kind, ns, name string, tmpl, obj map[string]string) runtime.Object {
	var tl map[string]string
	if tmpl != nil {
		tl = map[string]string{"app": name}
		maps.Copy(tl, tmpl)
	}
	pt := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: tl},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
	om := metav1.ObjectMeta{Namespace: ns, Name: name, Labels: obj}
	apps := metav1.TypeMeta{APIVersion: "apps/v1", Kind: kind}
	batch := metav1.TypeMeta{APIVersion: "batch/v1", Kind: kind}
	switch kind {
	case "Pod":
		return podObj(ns, name, tmpl)
	case "Deployment":
		return &appsv1.Deployment{TypeMeta: apps, ObjectMeta: om, Spec: appsv1.DeploymentSpec{Selector: sel, Template: pt}}
	case "ReplicaSet":
		return &appsv1.ReplicaSet{TypeMeta: apps, ObjectMeta: om, Spec: appsv1.ReplicaSetSpec{Selector: sel, Template: pt}}
	case "StatefulSet":
		return &appsv1.StatefulSet{TypeMeta: apps, ObjectMeta: om, Spec: appsv1.StatefulSetSpec{Selector: sel, Template: pt}}
	case "DaemonSet":
		return &appsv1.DaemonSet{TypeMeta: apps, ObjectMeta: om, Spec: appsv1.DaemonSetSpec{Selector: sel, Template: pt}}
	case "Job":
		pt.Spec.RestartPolicy = corev1.RestartPolicyNever
		return &batchv1.Job{TypeMeta: batch, ObjectMeta: om, Spec: batchv1.JobSpec{Template: pt}}
	case "CronJob":
		pt.Spec.RestartPolicy = corev1.RestartPolicyNever
		return &batchv1.CronJob{TypeMeta: batch, ObjectMeta: om,
			Spec: batchv1.CronJobSpec{Schedule: "@hourly", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: pt}}}}
	}
	panic("unknown kind " + kind)
}

// npObj builds a NetworkPolicy from its spec in YAML.
func npObj(ns, name, spec string) *networkingv1.NetworkPolicy {
	var np networkingv1.NetworkPolicy
	doc := fmt.Sprintf("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: %s, namespace: %s}\nspec:\n%s", name, ns, spec)
	if err := yaml.UnmarshalStrict([]byte(doc), &np); err != nil {
		panic(fmt.Sprintf("%v\n%s", err, doc))
	}
	return &np
}

func withLabels[T metav1.Object](o T, labels map[string]string) T {
	o.SetLabels(labels)
	return o
}

func svcObj(ns, name string, selector map[string]string, port, target int32) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Selector: selector, Ports: []corev1.ServicePort{{
			Protocol: corev1.ProtocolTCP, Port: port, TargetPort: intstr.FromInt32(target)}}},
	}
}

// newRequest builds an AdmissionRequest as the API server sends it: kind,
// resource, namespace and name filled in, the objects as JSON.
func newRequest(t testing.TB, op admissionv1.Operation, obj, old runtime.Object) *admissionv1.AdmissionRequest {
	t.Helper()
	req := &admissionv1.AdmissionRequest{UID: "parity", Operation: op}
	for _, o := range []runtime.Object{old, obj} { // obj wins
		if o == nil {
			continue
		}
		gvks, _, err := scheme.Scheme.ObjectKinds(o)
		if err != nil {
			t.Fatal(err)
		}
		g := gvks[0]
		req.Kind = metav1.GroupVersionKind{Group: g.Group, Version: g.Version, Kind: g.Kind}
		req.Resource = metav1.GroupVersionResource{Group: g.Group, Version: g.Version, Resource: strings.ToLower(g.Kind) + "s"}
		m := o.(metav1.Object)
		req.Namespace, req.Name = m.GetNamespace(), m.GetName()
	}
	if obj != nil {
		req.Object.Raw = mustMarshal(t, obj)
	}
	if old != nil {
		req.OldObject.Raw = mustMarshal(t, old)
	}
	return req
}

// ---- the matrix ----

// corpusMatrix generates each rule × action × kind × operation, and the
// match's selectors and exemptions.
func corpusMatrix(t *testing.T) []parityCase {
	var out []parityCase
	out = append(out, matrixRequiredLabels(t)...)
	out = append(out, matrixDefaultDeny(t)...)
	out = append(out, matrixHygiene(t)...)
	out = append(out, matrixMatch(t)...)
	return out
}

const labelsCfg = `rules:
  requiredLabels:
    enforcementAction: %s
    labels:
    - key: access
      allowedValues: ["true", "false"]%s
    - key: app.kubernetes.io/name
`

func matrixRequiredLabels(t *testing.T) []parityCase {
	complete := map[string]string{"access": "true", "app.kubernetes.io/name": "web"}
	noAccess := map[string]string{"app.kubernetes.io/name": "web"}
	bad := map[string]string{"access": "maybe", "app.kubernetes.io/name": "web"}
	onlyAccess := map[string]string{"access": "true"}
	other := map[string]string{"run": "x"}
	type step struct {
		name     string
		op       admissionv1.Operation
		obj, old map[string]string // pod or template labels; "none" below
		noObj    bool
	}
	steps := []step{
		{name: "CREATE complete", op: admissionv1.Create, obj: complete},
		{name: "CREATE without access", op: admissionv1.Create, obj: noAccess},
		{name: "CREATE without either", op: admissionv1.Create, obj: other},
		{name: "CREATE without labels", op: admissionv1.Create, obj: nil},
		{name: "CREATE with a value not allowed", op: admissionv1.Create, obj: bad},
		{name: "CREATE with an empty value", op: admissionv1.Create, obj: map[string]string{"access": "", "app.kubernetes.io/name": ""}},
		{name: "UPDATE introducing a value not allowed", op: admissionv1.Update, obj: bad, old: complete},
		{name: "UPDATE keeping a value not allowed", op: admissionv1.Update, obj: bad, old: bad},
		{name: "UPDATE keeping a missing label", op: admissionv1.Update, obj: onlyAccess, old: onlyAccess},
		{name: "UPDATE removing a label", op: admissionv1.Update, obj: noAccess, old: complete},
		{name: "UPDATE fixing", op: admissionv1.Update, obj: complete, old: bad},
		{name: "UPDATE changing the bad value", op: admissionv1.Update, obj: bad, old: map[string]string{"access": "no", "app.kubernetes.io/name": "web"}},
		{name: "DELETE", op: admissionv1.Delete, old: other, noObj: true},
	}
	var out []parityCase
	for _, def := range []string{"\n      default: \"false\"", ""} {
		for _, action := range actions {
			cfg := fmt.Sprintf(labelsCfg, action, def)
			for _, kind := range config.PodKinds() {
				for _, s := range steps {
					if def == "" && s.op != admissionv1.Create {
						continue // the default only matters on CREATE
					}
					var obj, old runtime.Object
					if !s.noObj {
						obj = workloadObj(kind, "default", "web", s.obj, nil)
					}
					if s.old != nil {
						old = workloadObj(kind, "default", "web", s.old, nil)
					}
					name := fmt.Sprintf("requiredLabels/%s/default=%v/%s/%s", action, def != "", kind, s.name)
					out = append(out, parityCase{name: name, cfg: cfg, objs: labelsCluster(), req: newRequest(t, s.op, obj, old)})
				}
				if kind != "Pod" {
					// The workload's own labels do not count: its template's do.
					name := fmt.Sprintf("requiredLabels/%s/default=%v/%s/CREATE labelled itself, not its template", action, def != "", kind)
					obj := workloadObj(kind, "default", "web", other, complete)
					out = append(out, parityCase{name: name, cfg: cfg, objs: labelsCluster(), req: newRequest(t, admissionv1.Create, obj, nil)})
				}
			}
		}
	}
	return out
}

// labelsCluster has a policy selecting on access (the Go message names
// it) and one on another key.
func labelsCluster() []runtime.Object {
	return []runtime.Object{
		nsObj("default", nil),
		npObj("default", "access-httpd", "  podSelector: {matchLabels: {name: networkpolicy-demo}}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {access: \"true\"}}\n"),
		npObj("default", "default-deny", "  podSelector: {}\n  policyTypes: [Ingress]\n"),
	}
}

const ddCfg = `rules:
  defaultDeny:
    enforcementAction: %s
    policyTypes: [%s]
    match:
      namespaceSelector: {matchLabels: {protected: "true"}}
`

const (
	denyIngressSpec = "  podSelector: {}\n  policyTypes: [Ingress]\n"
	denyEgressSpec  = "  podSelector: {}\n  policyTypes: [Egress]\n"
	denyBothSpec    = "  podSelector: {}\n  policyTypes: [Ingress, Egress]\n"
	accessSpec      = "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {access: \"true\"}}\n    ports:\n    - {protocol: TCP, port: 80}\n"
)

func matrixDefaultDeny(t *testing.T) []parityCase {
	prod := nsObj("prod", map[string]string{"protected": "true"})
	dev := nsObj("dev", nil)
	terminating := nsObj("prod", map[string]string{"protected": "true"})
	terminating.Status.Phase = corev1.NamespaceTerminating
	deleting := nsObj("prod", map[string]string{"protected": "true"})
	deleting.DeletionTimestamp = &metav1.Time{}
	deleting.Finalizers = []string{"kubernetes"}
	denyIn := npObj("prod", "default-deny", denyIngressSpec)
	denyOut := npObj("prod", "deny-egress", denyEgressSpec)
	denyBoth := npObj("prod", "default-deny", denyBothSpec)
	access := npObj("prod", "access-web", accessSpec)
	cl := func(objs ...runtime.Object) []runtime.Object {
		return append([]runtime.Object{dev, podObj("prod", "web", map[string]string{"app": "web"})}, objs...)
	}
	type podStep struct {
		name  string
		types string
		ns    string
		objs  []runtime.Object
	}
	podSteps := []podStep{
		{"with the default deny", "Ingress", "prod", cl(prod, denyIn)},
		{"with none", "Ingress", "prod", cl(prod)},
		{"with an egress deny only", "Ingress", "prod", cl(prod, denyOut)},
		{"with a policy that has rules only", "Ingress", "prod", cl(prod, access)},
		{"with a deny under another name", "Ingress", "prod", cl(prod, npObj("prod", "deny-everything", denyBothSpec))},
		{"with a deny selecting some pods only", "Ingress", "prod", cl(prod, npObj("prod", "default-deny", "  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Ingress]\n"))},
		{"with the default deny in another namespace", "Ingress", "prod", cl(prod, npObj("dev", "default-deny", denyIngressSpec))},
		{"unprotected, with none", "Ingress", "dev", cl(prod)},
		{"namespace not in the cluster", "Ingress", "elsewhere", cl(prod)},
		{"both types, ingress deny only", "Ingress, Egress", "prod", cl(prod, denyIn)},
		{"both types, one policy denying both", "Ingress, Egress", "prod", cl(prod, denyBoth)},
		{"both types, one policy each", "Ingress, Egress", "prod", cl(prod, denyIn, denyOut)},
		{"both types, none", "Ingress, Egress", "prod", cl(prod)},
		{"egress only, egress deny", "Egress", "prod", cl(prod, denyOut)},
		{"egress only, ingress deny", "Egress", "prod", cl(prod, denyIn)},
	}
	type npStep struct {
		name     string
		types    string
		op       admissionv1.Operation
		obj, old *networkingv1.NetworkPolicy
		objs     []runtime.Object
		noOld    bool // DELETE without oldObject: the cluster's copy counts
	}
	weakened := func(spec string) *networkingv1.NetworkPolicy { return npObj("prod", "default-deny", spec) }
	relabelled := withLabels(npObj("prod", "default-deny", denyIngressSpec), map[string]string{"team": "a"})
	finalizing := npObj("prod", "default-deny", denyIngressSpec)
	finalizing.DeletionTimestamp = &metav1.Time{}
	npSteps := []npStep{
		{name: "DELETE the last default deny", types: "Ingress", op: admissionv1.Delete, old: denyIn, objs: cl(prod, denyIn)},
		{name: "DELETE the last default deny, no oldObject", types: "Ingress", op: admissionv1.Delete, old: denyIn, objs: cl(prod, denyIn), noOld: true},
		{name: "DELETE a default deny with another left", types: "Ingress", op: admissionv1.Delete, old: denyIn, objs: cl(prod, denyIn, npObj("prod", "deny-all", denyBothSpec))},
		{name: "DELETE a policy with rules", types: "Ingress", op: admissionv1.Delete, old: access, objs: cl(prod, denyIn, access)},
		{name: "DELETE the egress deny, ingress required", types: "Ingress", op: admissionv1.Delete, old: denyOut, objs: cl(prod, denyIn, denyOut)},
		{name: "DELETE the last default deny in a terminating namespace", types: "Ingress", op: admissionv1.Delete, old: denyIn, objs: cl(terminating, denyIn)},
		{name: "DELETE the last default deny in a namespace being deleted", types: "Ingress", op: admissionv1.Delete, old: denyIn, objs: cl(deleting, denyIn)},
		{name: "DELETE the last default deny, unprotected", types: "Ingress", op: admissionv1.Delete, old: npObj("dev", "default-deny", denyIngressSpec), objs: cl(prod, npObj("dev", "default-deny", denyIngressSpec))},
		{name: "UPDATE adding an ingress rule", types: "Ingress", op: admissionv1.Update, obj: weakened("  podSelector: {}\n  policyTypes: [Ingress]\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {access: \"true\"}}\n"), old: denyIn, objs: cl(prod, denyIn)},
		{name: "UPDATE narrowing the podSelector", types: "Ingress", op: admissionv1.Update, obj: weakened("  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Ingress]\n"), old: denyIn, objs: cl(prod, denyIn)},
		{name: "UPDATE switching to Egress", types: "Ingress", op: admissionv1.Update, obj: weakened(denyEgressSpec), old: denyIn, objs: cl(prod, denyIn)},
		{name: "UPDATE allowing all ingress", types: "Ingress", op: admissionv1.Update, obj: weakened("  podSelector: {}\n  ingress:\n  - {}\n"), old: denyIn, objs: cl(prod, denyIn)},
		{name: "UPDATE keeping it a default deny", types: "Ingress", op: admissionv1.Update, obj: relabelled, old: denyIn, objs: cl(prod, denyIn)},
		{name: "UPDATE adding Egress", types: "Ingress", op: admissionv1.Update, obj: weakened(denyBothSpec), old: denyIn, objs: cl(prod, denyIn)},
		{name: "UPDATE weakening, no oldObject", types: "Ingress", op: admissionv1.Update, obj: weakened(denyEgressSpec), old: denyIn, objs: cl(prod, denyIn), noOld: true},
		{name: "UPDATE weakening with another left", types: "Ingress", op: admissionv1.Update, obj: weakened(denyEgressSpec), old: denyIn, objs: cl(prod, denyIn, npObj("prod", "deny-all", denyBothSpec))},
		{name: "UPDATE removing finalizers of a deleted one", types: "Ingress", op: admissionv1.Update, obj: finalizing, old: denyIn, objs: cl(prod, denyIn)},
		{name: "UPDATE weakening in a terminating namespace", types: "Ingress", op: admissionv1.Update, obj: weakened(denyEgressSpec), old: denyIn, objs: cl(terminating, denyIn)},
		{name: "UPDATE a policy with rules", types: "Ingress", op: admissionv1.Update, obj: withLabels(npObj("prod", "access-web", accessSpec), map[string]string{"x": "y"}), old: access, objs: cl(prod, denyIn, access)},
		{name: "CREATE a policy", types: "Ingress", op: admissionv1.Create, obj: access, objs: cl(prod)},
		{name: "both types: DELETE the one denying both", types: "Ingress, Egress", op: admissionv1.Delete, old: denyBoth, objs: cl(prod, denyBoth)},
		{name: "both types: DELETE it, an ingress deny left", types: "Ingress, Egress", op: admissionv1.Delete, old: denyBoth, objs: cl(prod, denyBoth, npObj("prod", "deny-in", denyIngressSpec))},
		{name: "both types: UPDATE dropping Egress", types: "Ingress, Egress", op: admissionv1.Update, obj: npObj("prod", "default-deny", denyIngressSpec), old: denyBoth, objs: cl(prod, denyBoth)},
		{name: "both types: UPDATE adding an egress rule", types: "Ingress, Egress", op: admissionv1.Update, obj: npObj("prod", "default-deny", denyBothSpec+"  egress:\n  - to:\n    - podSelector: {}\n"), old: denyBoth, objs: cl(prod, denyBoth)},
	}
	var out []parityCase
	for _, action := range actions {
		for _, s := range podSteps {
			cfg := fmt.Sprintf(ddCfg, action, s.types)
			for _, kind := range config.PodKinds() {
				name := fmt.Sprintf("defaultDeny/%s/CREATE %s/%s", action, kind, s.name)
				out = append(out, parityCase{name: name, cfg: cfg, objs: s.objs, req: newRequest(t, admissionv1.Create, workloadObj(kind, s.ns, "web", map[string]string{"app": "web"}, nil), nil)})
			}
		}
		cfg := fmt.Sprintf(ddCfg, action, "Ingress")
		out = append(out, parityCase{name: fmt.Sprintf("defaultDeny/%s/UPDATE Pod/with none", action), cfg: cfg, objs: cl(prod),
			req: newRequest(t, admissionv1.Update, podObj("prod", "web", map[string]string{"app": "web", "v": "2"}), podObj("prod", "web", map[string]string{"app": "web"}))})
		out = append(out, parityCase{name: fmt.Sprintf("defaultDeny/%s/DELETE Pod/with none", action), cfg: cfg, objs: cl(prod),
			req: newRequest(t, admissionv1.Delete, nil, podObj("prod", "web", map[string]string{"app": "web"}))})
		for _, s := range npSteps {
			cfg := fmt.Sprintf(ddCfg, action, s.types)
			var obj, old runtime.Object
			if s.obj != nil {
				obj = s.obj
			}
			if s.old != nil {
				old = s.old
			}
			req := newRequest(t, s.op, obj, old)
			if s.noOld {
				req.OldObject = runtime.RawExtension{}
			}
			out = append(out, parityCase{name: fmt.Sprintf("defaultDeny/%s/NetworkPolicy/%s", action, s.name), cfg: cfg, objs: s.objs, req: req})
		}
	}
	return out
}

const hygieneCfg = `rules:
  defaultDeny:
    enforcementAction: dryrun
    match:
      namespaceSelector: {matchLabels: {protected: "true"}}
  networkPolicyHygiene:
    enforcementAction: %s
%s`

func matrixHygiene(t *testing.T) []parityCase {
	cluster := func(ns string) []runtime.Object {
		return []runtime.Object{
			nsObj("prod", map[string]string{"protected": "true"}),
			nsObj("dev", nil),
			podObj(ns, "web-1", map[string]string{"app": "web"}),
			podObj(ns, "client", map[string]string{"access": "true"}),
			svcObj(ns, "web", map[string]string{"app": "web"}, 8080, 80),
			npObj(ns, "default-deny", denyIngressSpec),
		}
	}
	from := func(peers string) string {
		return "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from:\n" + peers + "    ports:\n    - {protocol: TCP, port: 80}\n"
	}
	specs := []struct{ name, spec string }{
		{"clean", accessSpec},
		{"0.0.0.0/0", from("    - ipBlock: {cidr: 0.0.0.0/0}\n")},
		{"::/0", from("    - ipBlock: {cidr: \"::/0\"}\n")},
		{"0.0.0.0/0 with an except", from("    - ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}\n")},
		{"0.0.0.0/0 and ::/0 in two rules", "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 0.0.0.0/0}\n  - from:\n    - ipBlock: {cidr: \"::/0\"}\n"},
		{"egress to 0.0.0.0/0", "  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Egress]\n  egress:\n  - to:\n    - ipBlock: {cidr: 0.0.0.0/0}\n"},
		{"a node network ipBlock", from("    - ipBlock: {cidr: 192.168.2.0/24}\n")},
		{"allow-all ingress rule", "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - {}\n"},
		{"allow-all ingress on all pods", "  podSelector: {}\n  ingress:\n  - {}\n"},
		{"ingress from every namespace", "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from:\n    - namespaceSelector: {}\n"},
		{"an invalid CIDR", from("    - ipBlock: {cidr: 10.0.0.0/33}\n")},
		{"an except outside the CIDR", from("    - ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}\n")},
		{"a port out of range", "  podSelector: {}\n  ingress:\n  - ports:\n    - {protocol: TCP, port: 70000}\n"},
		{"endPort below port", "  podSelector: {}\n  ingress:\n  - ports:\n    - {protocol: TCP, port: 80, endPort: 79}\n"},
		{"an invalid selector operator", "  podSelector: {matchExpressions: [{key: app, operator: Near, values: [web]}]}\n  policyTypes: [Ingress]\n"},
		{"an unknown policy type", "  podSelector: {}\n  policyTypes: [Sideways]\n"},
		{"an invalid label value", "  podSelector: {matchLabels: {app: \"not a value\"}}\n  policyTypes: [Ingress]\n"},
		{"selects no pods", "  podSelector: {matchLabels: {app: nothing}}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {access: \"true\"}}\n"},
		{"a named port nobody exposes", "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - ports:\n    - {protocol: TCP, port: https}\n"},
		{"the named port the pods expose", "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - ports:\n    - {protocol: TCP, port: http}\n"},
		{"an egress named port", "  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Egress]\n  egress:\n  - to:\n    - namespaceSelector: {}\n    ports:\n    - {protocol: TCP, port: dns}\n"},
		{"an egress named port to pods of this namespace", "  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Egress]\n  egress:\n  - to:\n    - podSelector: {matchLabels: {access: \"true\"}}\n    ports:\n    - {protocol: TCP, port: dns}\n"},
		{"the Service port instead of the target port", "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {access: \"true\"}}\n    ports:\n    - {protocol: TCP, port: 8080}\n"},
		{"a namespaceSelector matching no namespace", "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {team: nobody}}\n"},
		{"a default deny", denyIngressSpec},
	}
	flags := []struct{ name, extra string }{
		{"defaults", ""},
		{"denyIngressFromAnywhere=false", "    denyIngressFromAnywhere: false\n"},
		{"denyAllowAllIngressInProtected=false", "    denyAllowAllIngressInProtected: false\n"},
		{"lintWarnings=false", "    lintWarnings: false\n"},
	}
	var out []parityCase
	for _, action := range actions {
		for _, f := range flags {
			if f.name != "defaults" && action != config.Deny {
				continue // the flags do not depend on the action
			}
			cfg := fmt.Sprintf(hygieneCfg, action, f.extra)
			for _, ns := range []string{"prod", "dev"} {
				for _, s := range specs {
					np := npObj(ns, "web", s.spec)
					name := fmt.Sprintf("networkPolicyHygiene/%s/%s/%s/CREATE %s", action, f.name, ns, s.name)
					out = append(out, parityCase{name: name, cfg: cfg, objs: cluster(ns), req: newRequest(t, admissionv1.Create, np, nil)})
					if f.name != "defaults" {
						continue
					}
					// UPDATE from the same policy (tolerated), from a clean one
					// (introduced), and to a clean one.
					old := withLabels(npObj(ns, "web", s.spec), map[string]string{"v": "1"})
					objs := append(cluster(ns), old)
					out = append(out, parityCase{name: name + "/UPDATE keeping it", cfg: cfg, objs: objs, req: newRequest(t, admissionv1.Update, np, old)})
					noOld := newRequest(t, admissionv1.Update, np, old)
					noOld.OldObject = runtime.RawExtension{} // the stored copy stands for it
					out = append(out, parityCase{name: name + "/UPDATE keeping it, no oldObject", cfg: cfg, objs: objs, req: noOld})
					clean := npObj(ns, "web", accessSpec)
					out = append(out, parityCase{name: name + "/UPDATE from a clean one", cfg: cfg, objs: append(cluster(ns), clean), req: newRequest(t, admissionv1.Update, np, clean)})
					out = append(out, parityCase{name: name + "/UPDATE to a clean one", cfg: cfg, objs: objs, req: newRequest(t, admissionv1.Update, clean, old)})
					out = append(out, parityCase{name: name + "/DELETE", cfg: cfg, objs: objs, req: newRequest(t, admissionv1.Delete, nil, old)})
				}
			}
		}
	}
	return out
}

// matrixMatch covers the match of each rule: exemptNamespaces, namespaces,
// excludedNamespaces, namespaceSelector, objectSelector and kinds.
func matrixMatch(t *testing.T) []parityCase {
	namespaces := []string{"default", "team-a", "team-b", "kube-system", "podwall-system", "not-in-cluster"}
	cluster := []runtime.Object{
		nsObj("default", nil),
		nsObj("team-a", map[string]string{"team": "a", "tier": "front"}),
		nsObj("team-b", map[string]string{"team": "b"}),
		nsObj("kube-system", nil),
		nsObj("podwall-system", nil),
	}
	rl := func(top, match string) string {
		return top + "rules:\n  requiredLabels:\n    labels:\n    - key: access\n      default: \"false\"\n    - key: owner\n" + match
	}
	nsConfigs := []struct{ name, cfg string }{
		{"exemptNamespaces omitted", rl("", "")},
		{"exemptNamespaces empty", rl("exemptNamespaces: []\n", "")},
		{"exemptNamespaces team-a", rl("exemptNamespaces: [team-a]\n", "")},
		{"namespaces team-a and not-in-cluster", rl("", "    match:\n      namespaces: [team-a, not-in-cluster]\n")},
		{"excludedNamespaces team-b", rl("", "    match:\n      excludedNamespaces: [team-b]\n")},
		{"namespaces and excludedNamespaces", rl("", "    match:\n      namespaces: [team-a, team-b]\n      excludedNamespaces: [team-b]\n")},
		{"namespaceSelector matchLabels", rl("", "    match:\n      namespaceSelector: {matchLabels: {team: a}}\n")},
		{"namespaceSelector In", rl("", "    match:\n      namespaceSelector: {matchExpressions: [{key: team, operator: In, values: [a, b]}]}\n")},
		{"namespaceSelector NotIn", rl("", "    match:\n      namespaceSelector: {matchExpressions: [{key: team, operator: NotIn, values: [a]}]}\n")},
		{"namespaceSelector Exists", rl("", "    match:\n      namespaceSelector: {matchExpressions: [{key: team, operator: Exists}]}\n")},
		{"namespaceSelector DoesNotExist", rl("", "    match:\n      namespaceSelector: {matchExpressions: [{key: team, operator: DoesNotExist}]}\n")},
		{"namespaceSelector on the name label", rl("", "    match:\n      namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [team-b, not-in-cluster, kube-system]}]}\n")},
		{"namespaceSelector empty", rl("", "    match:\n      namespaceSelector: {}\n")},
		{"namespaceSelector and exemptNamespaces empty", rl("exemptNamespaces: []\n", "    match:\n      namespaceSelector: {matchExpressions: [{key: tier, operator: NotIn, values: [front]}]}\n")},
	}
	var out []parityCase
	for _, c := range nsConfigs {
		for _, ns := range namespaces {
			for _, kind := range []string{"Pod", "Deployment"} {
				obj := workloadObj(kind, ns, "web", map[string]string{"run": "x"}, nil)
				out = append(out, parityCase{name: fmt.Sprintf("match/%s/CREATE %s in %s", c.name, kind, ns), cfg: c.cfg, objs: cluster, req: newRequest(t, admissionv1.Create, obj, nil)})
			}
			old := podObj(ns, "web", map[string]string{"access": "false"})
			obj := podObj(ns, "web", map[string]string{"access": "no"})
			out = append(out, parityCase{name: fmt.Sprintf("match/%s/UPDATE Pod in %s", c.name, ns), cfg: c.cfg, objs: cluster, req: newRequest(t, admissionv1.Update, obj, old)})
		}
	}

	// objectSelector: the object's own labels, old or new.
	objSel := rl("", "    match:\n      objectSelector:\n        matchLabels: {checked: \"yes\"}\n        matchExpressions:\n        - {key: skip, operator: DoesNotExist}\n")
	type sel struct {
		name          string
		op            admissionv1.Operation
		objL, oldL    map[string]string // the object's own labels
		tmpl, oldTmpl map[string]string
	}
	sels := []sel{
		{name: "CREATE selected", op: admissionv1.Create, objL: map[string]string{"checked": "yes"}, tmpl: map[string]string{"run": "x"}},
		{name: "CREATE not selected", op: admissionv1.Create, objL: map[string]string{"checked": "no"}, tmpl: map[string]string{"run": "x"}},
		{name: "CREATE selected but skipped", op: admissionv1.Create, objL: map[string]string{"checked": "yes", "skip": ""}, tmpl: map[string]string{"run": "x"}},
		{name: "CREATE selected by the template only", op: admissionv1.Create, objL: nil, tmpl: map[string]string{"run": "x", "checked": "yes"}},
		{name: "UPDATE only the old one selected", op: admissionv1.Update, objL: map[string]string{"checked": "no"}, oldL: map[string]string{"checked": "yes"}, tmpl: map[string]string{"access": "x"}, oldTmpl: map[string]string{"access": "y"}},
		{name: "UPDATE only the new one selected", op: admissionv1.Update, objL: map[string]string{"checked": "yes"}, oldL: map[string]string{"checked": "no"}, tmpl: map[string]string{"access": "x"}, oldTmpl: map[string]string{"access": "y"}},
		{name: "UPDATE neither selected", op: admissionv1.Update, objL: map[string]string{"checked": "no"}, oldL: nil, tmpl: map[string]string{"access": "x"}, oldTmpl: map[string]string{"access": "y"}},
	}
	for _, action := range actions {
		cfg := strings.Replace(objSel, "  requiredLabels:\n", "  requiredLabels:\n    enforcementAction: "+string(action)+"\n", 1)
		for _, kind := range []string{"Pod", "Deployment", "CronJob"} {
			for _, s := range sels {
				mk := func(objL, tmpl map[string]string) runtime.Object {
					if kind == "Pod" {
						l := map[string]string{}
						maps.Copy(l, tmpl)
						maps.Copy(l, objL)
						return podObj("default", "web", l)
					}
					return workloadObj(kind, "default", "web", tmpl, objL)
				}
				var old runtime.Object
				if s.op == admissionv1.Update {
					old = mk(s.oldL, s.oldTmpl)
				}
				out = append(out, parityCase{name: fmt.Sprintf("match/objectSelector/%s/%s/%s", action, kind, s.name), cfg: cfg, objs: cluster, req: newRequest(t, s.op, mk(s.objL, s.tmpl), old)})
			}
		}
	}

	// kinds.
	kindCfgs := []struct{ name, cfg string }{
		{"requiredLabels kinds Pod", "rules:\n  requiredLabels:\n    match: {kinds: [Pod]}\n    labels:\n    - key: owner\n"},
		{"requiredLabels kinds Deployment and CronJob", "rules:\n  requiredLabels:\n    match: {kinds: [Deployment, CronJob]}\n    labels:\n    - key: owner\n"},
		{"defaultDeny kinds NetworkPolicy", "rules:\n  defaultDeny:\n    match: {kinds: [NetworkPolicy]}\n"},
		{"defaultDeny kinds Pod and Job", "rules:\n  defaultDeny:\n    match: {kinds: [Pod, Job]}\n"},
		{"defaultDeny with an objectSelector", "rules:\n  defaultDeny:\n    match:\n      objectSelector: {matchLabels: {guarded: \"yes\"}}\n"},
		{"defaultDeny and hygiene in team-a only", "rules:\n  defaultDeny:\n    match: {namespaces: [team-a]}\n  networkPolicyHygiene:\n    match: {namespaces: [team-a]}\n"},
		{"hygiene excluding team-a, defaultDeny everywhere", "rules:\n  defaultDeny:\n    enforcementAction: warn\n  networkPolicyHygiene:\n    match: {excludedNamespaces: [team-a]}\n"},
	}
	for _, kc := range kindCfgs {
		for _, ns := range []string{"default", "team-a"} {
			deny := npObj(ns, "default-deny", denyIngressSpec)
			guarded := withLabels(npObj(ns, "default-deny", denyIngressSpec), map[string]string{"guarded": "yes"})
			withDeny := append(slices.Clone(cluster), deny)
			for _, kind := range config.PodKinds() {
				obj := workloadObj(kind, ns, "web", map[string]string{"run": "x"}, map[string]string{"guarded": "yes"})
				out = append(out, parityCase{name: fmt.Sprintf("match/%s/CREATE %s in %s", kc.name, kind, ns), cfg: kc.cfg, objs: cluster, req: newRequest(t, admissionv1.Create, obj, nil)})
			}
			out = append(out, parityCase{name: fmt.Sprintf("match/%s/DELETE the last default deny in %s", kc.name, ns), cfg: kc.cfg, objs: withDeny, req: newRequest(t, admissionv1.Delete, nil, deny)})
			out = append(out, parityCase{name: fmt.Sprintf("match/%s/DELETE the last guarded default deny in %s", kc.name, ns), cfg: kc.cfg, objs: append(slices.Clone(cluster), guarded), req: newRequest(t, admissionv1.Delete, nil, guarded)})
			noOld := newRequest(t, admissionv1.Delete, nil, guarded)
			noOld.OldObject = runtime.RawExtension{}
			out = append(out, parityCase{name: fmt.Sprintf("match/%s/DELETE the last guarded default deny in %s, no oldObject", kc.name, ns), cfg: kc.cfg, objs: append(slices.Clone(cluster), guarded), req: noOld})
			open := npObj(ns, "open", "  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 0.0.0.0/0}\n")
			out = append(out, parityCase{name: fmt.Sprintf("match/%s/CREATE an open policy in %s", kc.name, ns), cfg: kc.cfg, objs: withDeny, req: newRequest(t, admissionv1.Create, open, nil)})
		}
	}
	return out
}

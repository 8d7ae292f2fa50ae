package rules

import (
	"context"
	"slices"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestCacheability(t *testing.T) {
	ev, err := NewEvaluator(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cls := ev.cur.Load().shared.cls
	fn := func(ref string, args ...*ast.Term) ast.Ref {
		return append(ast.Ref{ast.NewTerm(ast.MustParseRef(ref))}, args...)
	}
	for _, c := range []struct {
		key            ast.Ref
		shareable, kub bool
	}{
		{ast.MustParseRef("data.podwall.lib.config"), true, false},
		{ast.MustParseRef("data.podwall.lib.families"), true, false},
		{ast.MustParseRef(`data.podwall.lib.selective["requiredLabels"]`), true, false},
		{fn("data.podwall.lib.kinds", ast.StringTerm("requiredLabels")), true, false},
		{fn("data.podwall.lib.namespace_allowed", ast.StringTerm("defaultDeny"), ast.StringTerm("default")), true, false},
		// reads the namespace's labels in the cluster state
		{fn("data.podwall.lib.selectors.namespace_selected", ast.StringTerm("defaultDeny"), ast.StringTerm("default")), true, true},
		{ast.MustParseRef("data.podwall.lib.cluster.all_pods"), true, true},
		// read the request
		{ast.MustParseRef("data.podwall.lib.kind"), false, false},
		{ast.MustParseRef("data.podwall.admission.required_labels.checked"), false, false},
		{fn("data.podwall.lib.applies", ast.StringTerm("requiredLabels")), false, false},
		{ast.MustParseRef("data.podwall.admission.deny"), false, false},
		{ast.MustParseRef("data.podwall.lib"), false, false},
		// an object argument could come from a request: never kept
		{fn("data.podwall.lib.labels_of", ast.ObjectTerm()), false, false},
		// not a rule
		{ast.MustParseRef("data.kubernetes.pods"), false, false},
		{ast.MustParseRef("input.request"), false, false},
	} {
		ok, kube := cls.shareable(c.key)
		if ok != c.shareable || ok && kube != c.kub {
			t.Errorf("%v: shareable %v (kube %v), want %v (kube %v)", c.key, ok, kube, c.shareable, c.kub)
		}
	}

	// Time, `with` and the rules that use them are never data-only.
	mods := map[string]*ast.Module{"t.rego": ast.MustParseModuleWithOpts(`package t
now := time.now_ns()
later := now + 1
mocked := v if v := data.t.plain with data.x as 1
plain := data.x
`, ast.ParserOptions{RegoVersion: ast.RegoV1})}
	c := ast.NewCompiler()
	if c.Compile(mods); c.Failed() {
		t.Fatal(c.Errors)
	}
	cls = newCacheability(c)
	for ref, want := range map[string]bool{"data.t.now": false, "data.t.later": false, "data.t.mocked": false, "data.t.plain": true} {
		if ok, _ := cls.shareable(ast.MustParseRef(ref)); ok != want {
			t.Errorf("%s: shareable %v, want %v", ref, ok, want)
		}
	}
}

// TestSharedValuesFollowTheStore: values kept across queries are dropped
// when what they read changes, and only then.
func TestSharedValuesFollowTheStore(t *testing.T) {
	ctx := context.Background()
	ev := seedEvaluator(t) // defaultDeny protects namespaces labelled env=prod: default is
	shared := ev.cur.Load().shared
	noDeny := func() {
		t.Helper()
		if err := ev.DeleteData(ctx, "/kubernetes/networkpolicies/default/default-deny"); err != nil {
			t.Fatal(err)
		}
	}
	noDeny()
	good := request(t, admissionv1.Create, "Pod", pod("web", map[string]string{"app.kubernetes.io/name": "web", "team": "web"}), nil)
	rules := func() []string {
		t.Helper()
		res, err := ev.Eval(ctx, good)
		if err != nil {
			t.Fatal(err)
		}
		return rulesOf(res.Violations)
	}
	if got := rules(); !slices.Equal(got, []string{"defaultDeny"}) {
		t.Fatalf("violations of %v, want defaultDeny's", got)
	}
	if snap := shared.snap.Load(); snap == nil || snap.n == 0 {
		t.Fatal("nothing kept")
	}
	kept := func(ref ast.Ref) bool {
		v, undefined := shared.query(ev.gens.load()).Get(ref)
		return v != nil || undefined
	}
	families := ast.MustParseRef("data.podwall.lib.families")
	if !kept(families) {
		t.Fatal("data.podwall.lib.families not kept")
	}

	// The cluster changes: the configuration's values stay, and the
	// namespace's labels are read afresh.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default", Labels: map[string]string{"env": "dev"}}}
	if err := ev.SetData(ctx, "/kubernetes/namespaces/default", ns); err != nil {
		t.Fatal(err)
	}
	if !kept(families) {
		t.Error("a write under /kubernetes dropped data.podwall.lib.families")
	}
	if got := rules(); len(got) != 0 {
		t.Errorf("namespace relabelled: violations of %v, want none", got)
	}

	// The configuration changes: everything is computed again.
	cfg := map[string]any{"rules": map[string]any{"requiredLabels": map[string]any{"labels": []any{map[string]any{"key": "tier"}}}}}
	if err := ev.SetConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if kept(families) {
		t.Error("a new configuration kept the old families")
	}
	if got := rules(); !slices.Equal(got, []string{"requiredLabels"}) {
		t.Errorf("new configuration: violations of %v, want requiredLabels'", got)
	}
	if err := ev.DeleteData(ctx, ConfigPath); err != nil {
		t.Fatal(err)
	}
	if got := rules(); len(got) != 0 {
		t.Errorf("no configuration: violations of %v, want none", got)
	}
}

// TestSharedValuesNotUnderWith: a value computed with data replaced is not
// the value, nor is the value used where data is replaced.
func TestSharedValuesNotUnderWith(t *testing.T) {
	ctx := context.Background()
	ev, err := NewEvaluator(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle.Bundle{Manifest: bundle.Manifest{Revision: "with"}, Modules: []bundle.ModuleFile{{Path: "t.rego", Raw: []byte(`package podwall.admission

x := data.podwall.config.x

deny contains {"rule": "mocked", "msg": sprintf("%v", [v])} if {
	v := x with data.podwall.config.x as 2
}

deny contains {"rule": "plain", "msg": sprintf("%v", [x])}

warn := set()

dryrun := set()

patch := []
`)}}}
	if err := ev.Reload(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := ev.SetConfig(ctx, map[string]any{"x": 1}); err != nil {
		t.Fatal(err)
	}
	req := request(t, admissionv1.Create, "Pod", pod("web", nil), nil)
	for i := range 3 {
		res, err := ev.Eval(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, m := range res.Violations {
			got[m.Rule] = m.Msg
		}
		if got["mocked"] != "2" || got["plain"] != "1" {
			t.Errorf("query %d: %v, want mocked 2 and plain 1", i, got)
		}
	}
}

// otherStore is a store that is not OPA's in-memory one.
type otherStore struct{ storage.Store }

func TestNoSharedValuesOnOtherStores(t *testing.T) {
	ctx := context.Background()
	ev, err := NewEvaluator(ctx, nil, WithStore(&otherStore{inmem.New()}))
	if err != nil {
		t.Fatal(err)
	}
	if ev.gens != nil || ev.cur.Load().shared != nil {
		t.Fatal("values kept across queries on a store that may not hold commits off")
	}
	if err := ev.SetConfig(ctx, map[string]any{"rules": map[string]any{"requiredLabels": map[string]any{"labels": []any{map[string]any{"key": "tier"}}}}}); err != nil {
		t.Fatal(err)
	}
	res, err := ev.Eval(ctx, request(t, admissionv1.Create, "Pod", pod("web", nil), nil))
	if err != nil || !slices.Equal(rulesOf(res.Violations), []string{"requiredLabels"}) {
		t.Fatalf("%v, %v", res, err)
	}
}

// TestSharedValuesConcurrently evaluates from several goroutines while the
// cluster and the configuration change (run it with -race).
func TestSharedValuesConcurrently(t *testing.T) {
	ctx := context.Background()
	ev := seedEvaluator(t)
	req := request(t, admissionv1.Create, "Pod", pod("web", map[string]string{"app.kubernetes.io/name": "web", "team": "web"}), nil)
	done := make(chan struct{})
	errs := make(chan error, 8)
	for range 4 {
		go func() {
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				if _, err := ev.Eval(ctx, req); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range 50 {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default", Labels: map[string]string{"env": []string{"prod", "dev"}[i%2]}}}
		if err := ev.SetData(ctx, "/kubernetes/namespaces/default", ns); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			if err := ev.SetConfig(ctx, map[string]any{"rules": map[string]any{"requiredLabels": map[string]any{}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(done)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Quiet again: the answer is the configuration's.
	res, err := ev.Eval(ctx, req)
	if err != nil || len(res.Violations) != 0 {
		t.Fatalf("%+v, %v", res, err)
	}
}

// TestCloseStopsKeeping: a closed Evaluator no longer watches its store,
// so it keeps nothing, and still answers as the store says.
func TestCloseStopsKeeping(t *testing.T) {
	ctx := context.Background()
	store := inmem.NewWithOpts(inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	ev, err := NewEvaluator(ctx, nil, WithStore(store))
	if err != nil {
		t.Fatal(err)
	}
	cfg := func(key string) map[string]any {
		return map[string]any{"rules": map[string]any{"requiredLabels": map[string]any{"labels": []any{map[string]any{"key": key}}}}}
	}
	req := request(t, admissionv1.Create, "Pod", pod("web", map[string]string{"tier": "web"}), nil)
	violations := func() int {
		t.Helper()
		res, err := ev.Eval(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return len(res.Violations)
	}
	if err := ev.SetConfig(ctx, cfg("team")); err != nil {
		t.Fatal(err)
	}
	if n := violations(); n != 1 {
		t.Fatalf("%d violations, want 1", n)
	}
	if err := ev.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ev.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
	before := ev.gens.load()
	if err := ev.SetConfig(ctx, cfg("tier")); err != nil {
		t.Fatal(err)
	}
	if ev.gens.load() != before {
		t.Error("a closed Evaluator still counts commits")
	}
	if n := violations(); n != 0 {
		t.Errorf("after Close and a new configuration: %d violations, want 0", n)
	}
}

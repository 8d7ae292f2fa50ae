package server_test

import (
	"cmp"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/storage"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	regorules "github.com/podwall/podwall/rules"
	"github.com/podwall/podwall/webhook/config"
	"github.com/podwall/podwall/webhook/rules"
	"github.com/podwall/podwall/webhook/server"
)

// engines are the seed configuration with its rules on each engine: the
// outcomes must not depend on it.
var engines = []struct{ name, config string }{
	{"go", "testdata/seed.yaml"},
	{"rego", "testdata/seed-rego.yaml"},
	{"mixed", "testdata/seed-mixed.yaml"},
}

var (
	bundleOnce sync.Once
	embedded   *bundle.Bundle
	bundleErr  error
)

// embeddedBundle is the embedded rules, built once for the package's tests.
func embeddedBundle(tb testing.TB) *bundle.Bundle {
	tb.Helper()
	bundleOnce.Do(func() { embedded, bundleErr = regorules.Bundle("test") })
	if bundleErr != nil {
		tb.Fatal(bundleErr)
	}
	return embedded
}

// newRego returns the Rego side for e's configuration, with c mirrored
// into data.kubernetes.
func newRego(tb testing.TB, e *rules.Evaluator, c *rules.MemoryCluster) *server.RegoRules {
	tb.Helper()
	r, err := server.NewRegoRules(context.Background(), embeddedBundle(tb), logr.Discard())
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.SetConfig(context.Background(), e.Config()); err != nil {
		tb.Fatal(err)
	}
	mirror(tb, r, c)
	return r
}

// mirror replaces data.kubernetes with c's objects, as the informers'
// handlers keep it in the server.
func mirror(tb testing.TB, r *server.RegoRules, c *rules.MemoryCluster) {
	tb.Helper()
	ctx := context.Background()
	if err := storage.WriteOne(ctx, r.Store(), storage.RemoveOp, storage.Path{"kubernetes"}, nil); err != nil && !storage.IsNotFound(err) {
		tb.Fatal(err)
	}
	var objs []runtime.Object
	for _, ns := range c.Namespaces() {
		objs = append(objs, ns)
		for _, p := range c.Pods(ns.Name) {
			objs = append(objs, p)
		}
		for _, np := range c.NetworkPolicies(ns.Name) {
			objs = append(objs, np)
		}
		for _, s := range c.Services(ns.Name) {
			objs = append(objs, s)
		}
	}
	for _, o := range objs {
		if err := regorules.PutKubernetesObject(ctx, r.Store(), o); err != nil {
			tb.Fatal(err)
		}
	}
}

// engineHandlers are the handlers of one of engines' configurations over c.
func engineHandlers(tb testing.TB, path string, c *rules.MemoryCluster) (*server.Validator, *server.Mutator, *server.RegoRules) {
	tb.Helper()
	e := loadEvaluator(tb, path)
	src := server.Static{E: e}
	if len(regoNames(e.Config())) > 0 {
		src.R = newRego(tb, e, c)
	}
	return server.NewValidator(src, c, logr.Discard()), server.NewMutator(src, c, logr.Discard()), src.R
}

func regoNames(cfg *config.AdmissionConfiguration) []string {
	var out []string
	for name, c := range map[string]*config.Common{
		config.RuleRequiredLabels:       commonOf(cfg.Rules.RequiredLabels),
		config.RuleDefaultDeny:          commonOf(cfg.Rules.DefaultDeny),
		config.RuleNetworkPolicyHygiene: commonOf(cfg.Rules.NetworkPolicyHygiene),
		config.RuleProtectedAccess:      commonOf(cfg.Rules.ProtectedAccess),
	} {
		if c != nil && c.Engine == config.EngineRego {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func commonOf[T any](r *T) *config.Common {
	if r == nil {
		return nil
	}
	switch r := any(r).(type) {
	case *config.RequiredLabelsRule:
		return &r.Common
	case *config.DefaultDenyRule:
		return &r.Common
	case *config.NetworkPolicyHygieneRule:
		return &r.Common
	case *config.ProtectedAccessRule:
		return &r.Common
	}
	return nil
}

// TestEnginesSeedDecisions: the seed scenario's requests get the same
// decision, from the same rule, whichever engine evaluates each rule.
func TestEnginesSeedDecisions(t *testing.T) {
	type step struct {
		name    string
		req     func(t *testing.T) admission.Request
		allowed bool
		rule    string   // the rule refusing it
		msg     []string // in the denial whatever the engine
	}
	steps := []step{
		{"busybox without access", func(t *testing.T) admission.Request {
			return request(t, admissionv1.Create, pod("default", "busybox", map[string]string{"run": "busybox"}), nil)
		}, false, config.RuleRequiredLabels, []string{`Pod default/busybox: label "access" is required`}},
		{"access not allowed", func(t *testing.T) admission.Request {
			return request(t, admissionv1.Create, pod("default", "b", map[string]string{"access": "yes"}), nil)
		}, false, config.RuleRequiredLabels, []string{`access="yes" is not allowed: want one of`}},
		{"pod in a protected namespace without default deny", func(t *testing.T) admission.Request {
			return request(t, admissionv1.Create, pod("shop", "web", map[string]string{"access": "false"}), nil)
		}, false, config.RuleDefaultDeny, []string{"namespace shop has no default-deny NetworkPolicy for Ingress", "shop/default-deny"}},
		{"labelled pod", func(t *testing.T) admission.Request {
			return request(t, admissionv1.Create, pod("default", "b", map[string]string{"access": "true"}), nil)
		}, true, "", nil},
		{"ingress from anywhere", func(t *testing.T) admission.Request {
			return request(t, admissionv1.Create, accessPolicy("default", "wide", "0.0.0.0/0"), nil)
		}, false, config.RuleNetworkPolicyHygiene, []string{"0.0.0.0/0"}},
		{"allow-all ingress in a protected namespace", func(t *testing.T) admission.Request {
			np := accessPolicy("shop", "open", "")
			np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}}
			return request(t, admissionv1.Create, np, nil)
		}, false, config.RuleNetworkPolicyHygiene, []string{"ingress rule 0 allows every"}},
		{"allow-all ingress elsewhere", func(t *testing.T) admission.Request {
			np := accessPolicy("default", "open", "")
			np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}}
			return request(t, admissionv1.Create, np, nil)
		}, true, "", nil},
		{"ipBlock policy", func(t *testing.T) admission.Request {
			return request(t, admissionv1.Create, accessPolicy("default", "access-httpd", "192.168.2.0/24"), nil)
		}, true, "", nil},
		{"a pod status update", func(t *testing.T) admission.Request {
			r := request(t, admissionv1.Update, pod("default", "busybox", nil), pod("default", "busybox", nil))
			r.SubResource = "status"
			return r
		}, true, "", nil},
	}
	// causes are each step's status causes from the first engine: every
	// engine must give the same types (rule/code) and fields. The messages
	// differ: the Go rules' say more.
	causes := map[string][]metav1.StatusCause{}
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) {
			v, _, _ := engineHandlers(t, eng.config, seedCluster())
			for _, s := range steps {
				t.Run(s.name, func(t *testing.T) {
					resp := v.Handle(context.Background(), s.req(t))
					if resp.Allowed != s.allowed {
						t.Fatalf("allowed = %v, want %v: %+v", resp.Allowed, s.allowed, resp.Result)
					}
					if s.allowed {
						return
					}
					if resp.Result.Code != http.StatusForbidden || !strings.HasPrefix(resp.Result.Message, "rule "+s.rule+": ") {
						t.Errorf("refusal = %d %q, want 403 by %s", resp.Result.Code, resp.Result.Message, s.rule)
					}
					for _, want := range s.msg {
						if !strings.Contains(resp.Result.Message, want) {
							t.Errorf("message lacks %q:\n%s", want, resp.Result.Message)
						}
					}
					c := slices.SortedFunc(slices.Values(resp.Result.Details.Causes), func(a, b metav1.StatusCause) int {
						return cmp.Or(strings.Compare(string(a.Type), string(b.Type)), strings.Compare(a.Field, b.Field))
					})
					if len(c) == 0 || !strings.HasPrefix(string(c[0].Type), s.rule+"/") {
						t.Errorf("causes = %+v, want rule/code", c)
					}
					if prev, ok := causes[s.name]; !ok {
						causes[s.name] = c
					} else if !sameCauses(prev, c) {
						t.Errorf("causes = %+v\nthe first engine's: %+v", c, prev)
					}
				})
			}
		})
	}
}

// TestEnginesMutation: the mutating webhook sets the default with either
// engine, and the validating webhook refuses a CREATE that reaches it
// still lacking the label (the mutation skipped), as the Go rule does.
func TestEnginesMutation(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) {
			v, m, _ := engineHandlers(t, eng.config, seedCluster())
			ctx := context.Background()
			req := request(t, admissionv1.Create, pod("default", "busybox", map[string]string{"run": "busybox"}), nil)
			resp := m.Handle(ctx, req)
			if !resp.Allowed || len(resp.Patches) != 1 {
				t.Fatalf("resp = %+v", resp)
			}
			if p := resp.Patches[0]; p.Operation != "add" || p.Path != "/metadata/labels/access" || p.Value != "false" {
				t.Errorf("patch = %+v", p)
			}
			if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], `requiredLabels: set missing label access="false" (the configured default) on Pod default/busybox`) {
				t.Errorf("warnings = %q", resp.Warnings)
			}
			// No labels at all: the map is added.
			resp = m.Handle(ctx, request(t, admissionv1.Create, pod("default", "bare", nil), nil))
			if len(resp.Patches) != 1 || resp.Patches[0].Path != "/metadata/labels" {
				t.Errorf("bare pod: %+v", resp.Patches)
			}
			// Already labelled: nothing to do, and nothing for a pod update.
			resp = m.Handle(ctx, request(t, admissionv1.Create, pod("default", "b2", map[string]string{"access": "true"}), nil))
			if !resp.Allowed || len(resp.Patches) != 0 || len(resp.Warnings) != 0 {
				t.Errorf("labelled pod: %+v", resp)
			}
			up := pod("default", "b3", nil)
			if resp := m.Handle(ctx, request(t, admissionv1.Update, up, up)); len(resp.Patches) != 0 {
				t.Errorf("update patched: %+v", resp.Patches)
			}
			// The validating side of an unpatched CREATE.
			resp = v.Handle(ctx, req)
			if resp.Allowed || !strings.Contains(resp.Result.Message, `rule requiredLabels: Pod default/busybox: label "access" is required`) {
				t.Errorf("unpatched pod: %+v", resp.Result)
			}
			if len(resp.Warnings) != 0 {
				t.Errorf("validating warnings = %q", resp.Warnings)
			}
			// The same cause whichever form the patch would take (one label
			// into the map, or the whole map).
			for _, r := range []admission.Request{req, request(t, admissionv1.Create, pod("default", "bare", nil), nil)} {
				resp = v.Handle(ctx, r)
				want := []metav1.StatusCause{{Type: "requiredLabels/missing-label", Field: "metadata.labels[access]"}}
				if resp.Allowed || !sameCauses(resp.Result.Details.Causes, want) {
					t.Errorf("unpatched pod %s: causes %+v, want %+v", r.Name, resp.Result.Details.Causes, want)
				}
			}
		})
	}
}

// TestEnginesLastDefaultDeny: the last default deny is kept with either
// engine, until a second one exists.
func TestEnginesLastDefaultDeny(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) {
			c := seedCluster()
			dd := defaultDeny("shop")
			c.Set(dd)
			v, _, r := engineHandlers(t, eng.config, c)
			resp := v.Handle(context.Background(), request(t, admissionv1.Delete, nil, dd))
			if resp.Allowed || !strings.Contains(resp.Result.Message, "rule defaultDeny: NetworkPolicy shop/default-deny is the last default deny for Ingress in namespace shop") {
				t.Fatalf("delete of the last default deny: %+v", resp.Result)
			}
			dd2 := defaultDeny("shop")
			dd2.Name = "deny-all"
			c.Set(dd2)
			if r != nil {
				mirror(t, r, c)
			}
			if resp := v.Handle(context.Background(), request(t, admissionv1.Delete, nil, dd)); !resp.Allowed {
				t.Fatalf("delete with another default deny: %+v", resp.Result)
			}
		})
	}
}

// TestRegoProtectedAccess: the Rego-only rule, through the handler.
func TestRegoProtectedAccess(t *testing.T) {
	c := seedCluster()
	c.Set(defaultDeny("shop"),
		&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "httpd", Labels: map[string]string{"name": "networkpolicy-demo", "access": "false"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "httpd", Image: "httpd", Ports: []corev1.ContainerPort{{ContainerPort: 80}}}}},
			Status:     corev1.PodStatus{PodIP: "10.0.0.5", PodIPs: []corev1.PodIP{{IP: "10.0.0.5"}}},
		})
	v, _, _ := engineHandlers(t, "testdata/seed-rego.yaml", c)
	// The seed's access policy needs access=true: admitted.
	if resp := v.Handle(context.Background(), request(t, admissionv1.Create, accessPolicy("shop", "access-httpd", ""), nil)); !resp.Allowed {
		t.Fatalf("access policy: %+v", resp.Result)
	}
	// One opening httpd to every pod of the namespace is not.
	np := accessPolicy("shop", "everyone", "")
	np.Spec.Ingress[0].From = []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}
	resp := v.Handle(context.Background(), request(t, admissionv1.Create, np, nil))
	if resp.Allowed || !strings.HasPrefix(resp.Result.Message, "rule protectedAccess: ") {
		t.Fatalf("opening policy: %+v", resp.Result)
	}
}

// TestRegoFailsClosed: an evaluation error refuses what a deny rule on
// rego would check, and only warns for a warn rule.
func TestRegoFailsClosed(t *testing.T) {
	ctx := context.Background()
	b, err := regorules.Bundle("failing")
	if err != nil {
		t.Fatal(err)
	}
	// A built-in error (strict in the webhook) fails every evaluation.
	b.Modules = append(b.Modules, bundle.ModuleFile{
		Path: "/podwall/admission/failing.rego", URL: "/podwall/admission/failing.rego",
		Raw: []byte("package podwall.admission\n\ndeny contains {\"rule\": \"x\", \"msg\": m} if m := to_number(input.request.uid)\n"),
	})
	r, err := server.NewRegoRules(ctx, b, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	c := seedCluster()
	mirror(t, r, c)
	cfg, err := config.Load("testdata/seed-rego.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Rules.DefaultDeny = nil // it would fail closed too
	for _, action := range []config.EnforcementAction{config.Deny, config.Warn} {
		cfg.Rules.RequiredLabels.EnforcementAction = action
		e, err := rules.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.SetConfig(ctx, e.Config()); err != nil {
			t.Fatal(err)
		}
		v := server.NewValidator(server.Static{E: e, R: r}, c, logr.Discard())
		req := request(t, admissionv1.Create, pod("default", "b", map[string]string{"access": "true"}), nil)
		resp := v.Handle(ctx, req)
		// The mutating side records nothing: the validating side reports
		// it, as with the Go rules.
		mres := rules.Result{Allowed: true}
		r.Mutate(ctx, e.Config(), &req.AdmissionRequest, &mres)
		if !mres.Allowed || len(mres.Violations) != 0 {
			t.Errorf("%s, mutating side: %+v", action, mres)
		}
		const want = "requiredLabels: podwall: the Rego rules failed: "
		switch action {
		case config.Deny:
			if resp.Allowed || !strings.Contains(resp.Result.Message, "rule "+want) || !strings.Contains(resp.Result.Message, "to_number") {
				t.Errorf("deny: %+v", resp.Result)
			}
			if c := resp.Result.Details.Causes; len(c) != 1 || c[0].Type != "requiredLabels/"+server.CodeRegoError {
				t.Errorf("causes = %+v", c)
			}
		case config.Warn:
			if !resp.Allowed || len(resp.Warnings) != 1 || !strings.HasPrefix(resp.Warnings[0], want) {
				t.Errorf("warn: allowed %v, warnings %q", resp.Allowed, resp.Warnings)
			}
		}
	}
}

// TestRegoSetConfigSwitchesEngines: a rule moved between engines is
// evaluated by exactly one of them, before and after.
func TestRegoSetConfigSwitchesEngines(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "podwall.yaml")
	atomicWrite(t, path, readFile(t, "testdata/seed.yaml"))
	r, err := server.NewRegoRules(context.Background(), embeddedBundle(t), logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	w, err := server.NewConfigWatcher(path, -1, logr.Discard(), server.WithRego(r))
	if err != nil {
		t.Fatal(err)
	}
	c := seedCluster()
	mirror(t, r, c)
	v := server.NewValidator(w, c, logr.Discard())
	req := request(t, admissionv1.Create, pod("default", "b", map[string]string{"access": "maybe"}), nil)
	check := func(wantRego []string) {
		t.Helper()
		if got := r.Rules(); !slices.Equal(got, wantRego) {
			t.Errorf("rego rules = %v, want %v", got, wantRego)
		}
		resp := v.Handle(context.Background(), req)
		if resp.Allowed || strings.Count(resp.Result.Message, "rule requiredLabels:") != 1 {
			t.Errorf("want one refusal by requiredLabels:\n%+v", resp.Result)
		}
	}
	check([]string{})
	atomicWrite(t, path, readFile(t, "testdata/seed-rego.yaml"))
	if changed, err := w.Reload(); !changed || err != nil {
		t.Fatal(changed, err)
	}
	check([]string{config.RuleRequiredLabels, config.RuleDefaultDeny, config.RuleNetworkPolicyHygiene, config.RuleProtectedAccess})
	atomicWrite(t, path, readFile(t, "testdata/seed-mixed.yaml"))
	if changed, err := w.Reload(); !changed || err != nil {
		t.Fatal(changed, err)
	}
	check([]string{config.RuleRequiredLabels, config.RuleNetworkPolicyHygiene})
	atomicWrite(t, path, readFile(t, "testdata/seed.yaml"))
	if changed, err := w.Reload(); !changed || err != nil {
		t.Fatal(changed, err)
	}
	check([]string{})
}

// TestBundleWatcherReload: a changed bundle takes effect; one that does
// not compile is refused with the compiler's errors, the previous one
// staying in force; fixed, it takes effect.
func TestBundleWatcherReload(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "bundle.tar.gz")
	write := func(revision string, edit func(b *bundle.Bundle)) { writeBundle(t, path, revision, edit) }
	write("v1", nil)
	r, err := server.NewRegoRules(ctx, nil, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	var logs logSink
	bw, err := server.NewBundleWatcher(ctx, path, -1, r, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	if r.Revision() != "v1" || bw.Generation() != 1 {
		t.Fatalf("revision %q, generation %d", r.Revision(), bw.Generation())
	}
	e := loadEvaluator(t, "testdata/seed-rego.yaml")
	if err := r.SetConfig(ctx, e.Config()); err != nil {
		t.Fatal(err)
	}
	c := seedCluster()
	mirror(t, r, c)
	v := server.NewValidator(server.Static{E: e, R: r}, c, logr.Discard())
	deny := request(t, admissionv1.Create, pod("default", "b", map[string]string{"access": "maybe"}), nil)
	if resp := v.Handle(ctx, deny); resp.Allowed {
		t.Fatal("v1 allowed a bad label")
	}

	// Unchanged: nothing happens.
	if changed, err := bw.Reload(ctx); changed || err != nil {
		t.Fatalf("unchanged: %v %v", changed, err)
	}
	// A bundle whose requiredLabels allows everything: picked up.
	write("v2", noRequiredLabels)
	if changed, err := bw.Reload(ctx); !changed || err != nil || r.Revision() != "v2" {
		t.Fatalf("v2: %v %v, revision %q", changed, err, r.Revision())
	}
	if resp := v.Handle(ctx, deny); !resp.Allowed {
		t.Fatalf("v2 still denies: %+v", resp.Result)
	}
	// A bundle that does not compile: refused, v2 stays.
	write("v3", brokenModule)
	changed, err := bw.Reload(ctx)
	if changed || err == nil || r.Revision() != "v2" || bw.Generation() != 2 {
		t.Fatalf("v3: changed %v, err %v, revision %q", changed, err, r.Revision())
	}
	for _, want := range []string{"/podwall/broken.rego:3", "undefined function undefined_function"} {
		if !strings.Contains(err.Error(), want) || !strings.Contains(logs.text(), want) {
			t.Errorf("error and log lack %q:\n%v\n%s", want, err, logs.text())
		}
	}
	if !strings.Contains(logs.text(), "Rego bundle change ignored: the previous bundle stays in force") {
		t.Errorf("log:\n%s", logs.text())
	}
	if resp := v.Handle(ctx, deny); !resp.Allowed {
		t.Errorf("v2 is no longer in force")
	}
	// Not reported twice.
	n := strings.Count(logs.text(), "change ignored")
	if _, err := bw.Reload(ctx); err == nil || strings.Count(logs.text(), "change ignored") != n {
		t.Errorf("reported twice")
	}
	// Back to v1: denies again.
	write("v1", nil)
	if changed, err := bw.Reload(ctx); !changed || err != nil || r.Revision() != "v1" {
		t.Fatalf("v1 again: %v %v", changed, err)
	}
	if resp := v.Handle(ctx, deny); resp.Allowed {
		t.Error("v1 allowed a bad label")
	}
}

// writeBundle writes the embedded rules, changed by edit, as a bundle
// tarball of the given revision, atomically.
func writeBundle(t *testing.T, path, revision string, edit func(b *bundle.Bundle)) {
	t.Helper()
	b, err := regorules.Bundle(revision)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(b)
	}
	var buf strings.Builder
	if err := regorules.WriteBundle(&buf, b); err != nil {
		t.Fatal(err)
	}
	atomicWrite(t, path, []byte(buf.String()))
}

// noRequiredLabels makes requiredLabels check nothing.
func noRequiredLabels(b *bundle.Bundle) {
	for i, m := range b.Modules {
		if strings.HasSuffix(m.Path, "required_labels.rego") {
			b.Modules[i].Raw = []byte("package podwall.admission.required_labels\n\nviolation := set()\n\npatch := []\n\nnote := \"\"\n")
			b.Modules[i].Parsed = nil
		}
	}
}

// brokenModule adds a module that does not compile.
func brokenModule(b *bundle.Bundle) {
	b.Modules = append(b.Modules, bundle.ModuleFile{
		Path: "/podwall/broken.rego", URL: "/podwall/broken.rego",
		Raw: []byte("package podwall.broken\n\nx := undefined_function(1)\n"),
	})
}

// TestLoadBundleDirectory reads the rules' source directory as a bundle
// directory: tests and ConfigMap bookkeeping are left out, the manifest
// kept, and an edit changes the digest.
func TestLoadBundleDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, regorules.Sources()); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "..2024_01_01"), 0o755); err != nil {
		t.Fatal(err)
	}
	atomicWrite(t, filepath.Join(dir, "..2024_01_01", "junk.rego"), []byte("not rego"))
	b, sum, err := server.LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range b.Modules {
		if strings.HasSuffix(m.Path, "_test.rego") || strings.Contains(m.Path, "..") {
			t.Errorf("module %s read", m.Path)
		}
	}
	if len(b.Modules) == 0 || b.Manifest.Roots == nil || !slices.Equal(*b.Manifest.Roots, []string{"podwall"}) {
		t.Errorf("%d modules, manifest %+v", len(b.Modules), b.Manifest)
	}
	r, err := server.NewRegoRules(context.Background(), b, logr.Discard())
	if err != nil {
		t.Fatalf("the directory does not compile: %v", err)
	}
	if !strings.HasPrefix(r.Revision(), "sha256:") {
		t.Errorf("revision = %q", r.Revision())
	}
	f := filepath.Join(dir, "podwall", "lib", "lib.rego")
	atomicWrite(t, f, append(readFile(t, f), "\n# edited\n"...))
	if _, sum2, err := server.LoadBundle(dir); err != nil || sum2 == sum {
		t.Errorf("edit not seen: %v", err)
	}
}

// TestRegoRulesMissing: a source whose configuration puts a rule on rego
// without Rego rules to run it refuses what that rule checks rather than
// admit it unchecked.
func TestRegoRulesMissing(t *testing.T) {
	e := loadEvaluator(t, "testdata/seed-mixed.yaml")
	v := server.NewValidator(server.Static{E: e}, seedCluster(), logr.Discard())
	resp := v.Handle(context.Background(), request(t, admissionv1.Create, pod("default", "b", map[string]string{"access": "true"}), nil))
	if resp.Allowed || resp.Result.Code != http.StatusInternalServerError || !strings.Contains(resp.Result.Message, "rule requiredLabels is on the rego engine") {
		t.Errorf("resp = %+v", resp.Result)
	}
}

// sameCauses compares status causes by type and field.
func sameCauses(a, b []metav1.StatusCause) bool {
	return slices.EqualFunc(a, b, func(x, y metav1.StatusCause) bool { return x.Type == y.Type && x.Field == y.Field })
}

// TestEnginesAgreeOnWarningsAndRecords: the findings (rule, action, code,
// field) and the warnings each side of the webhook gives are the same
// whichever engine runs requiredLabels, for its dryrun and warn actions:
// what a dryrun default would have set is recorded by the mutating side,
// warnings name the field, and a default that would unselect a
// workload's pods is not set, with a warning saying so.
func TestEnginesAgreeOnWarningsAndRecords(t *testing.T) {
	ctx := context.Background()
	deploy := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "d"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "access", Operator: metav1.LabelSelectorOpDoesNotExist}}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "d"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}},
		},
	}
	requests := map[string]admission.Request{
		"pod without the label":                            request(t, admissionv1.Create, pod("default", "p1", map[string]string{"run": "x"}), nil),
		"pod with a wrong value":                           request(t, admissionv1.Create, pod("default", "p2", map[string]string{"access": "yes"}), nil),
		"deployment whose selector needs the label absent": request(t, admissionv1.Create, deploy, nil),
	}
	type side struct {
		findings []string
		warnings []string
	}
	summary := func(res rules.Result) side {
		var s side
		for _, v := range res.Violations {
			s.findings = append(s.findings, string(v.Action)+" "+v.Rule+" "+v.Code+" "+v.Field)
		}
		s.warnings = slices.Clone(res.Warnings)
		slices.Sort(s.findings)
		slices.Sort(s.warnings)
		return s
	}
	for _, action := range []string{"dryrun", "warn"} {
		got := map[string]map[string][2]side{} // engine, request: mutating, validating
		for _, engine := range []string{"go", "rego"} {
			path := filepath.Join(t.TempDir(), "podwall.yaml")
			cfgText := "apiVersion: podwall.io/v1alpha1\nkind: AdmissionConfiguration\nrules:\n  requiredLabels:\n    engine: " + engine +
				"\n    enforcementAction: " + action + "\n    labels:\n    - key: access\n      allowedValues: [\"true\", \"false\"]\n      default: \"false\"\n"
			if err := os.WriteFile(path, []byte(cfgText), 0o644); err != nil {
				t.Fatal(err)
			}
			e := loadEvaluator(t, path)
			c := seedCluster()
			var r *server.RegoRules
			if engine == "rego" {
				r = newRego(t, e, c)
			}
			got[engine] = map[string][2]side{}
			for name, req := range requests {
				m, v := e.Mutate(ctx, &req.AdmissionRequest, c), e.Validate(ctx, &req.AdmissionRequest, c)
				if r != nil {
					r.Mutate(ctx, e.Config(), &req.AdmissionRequest, &m)
					r.Validate(ctx, e.Config(), &req.AdmissionRequest, &v)
				}
				got[engine][name] = [2]side{summary(m), summary(v)}
			}
		}
		for name := range requests {
			g, r := got["go"][name], got["rego"][name]
			for i, which := range []string{"mutating", "validating"} {
				if !slices.Equal(g[i].findings, r[i].findings) || !slices.Equal(g[i].warnings, r[i].warnings) {
					t.Errorf("%s, %s, %s side:\n  Go   %q %q\n  Rego %q %q", action, name, which, g[i].findings, g[i].warnings, r[i].findings, r[i].warnings)
				}
			}
		}
	}
}

// TestRegoBundleIgnoringTheWebhookSide: a bundle that does not read
// input.podwall.webhook (built before podwall set it, say) judges the object
// on the validating side as if its patch were applied; the missing labels
// with defaults are refused anyway, not admitted unlabelled.
func TestRegoBundleIgnoringTheWebhookSide(t *testing.T) {
	ctx := context.Background()
	b, err := regorules.Bundle("old")
	if err != nil {
		t.Fatal(err)
	}
	changed := false
	for i, m := range b.Modules {
		if strings.HasSuffix(m.Path, "required_labels.rego") {
			raw := strings.ReplaceAll(string(m.Raw), "\tlib.webhook != \"validating\"\n", "")
			changed = raw != string(m.Raw)
			b.Modules[i].Raw, b.Modules[i].Parsed = []byte(raw), nil
		}
	}
	if !changed {
		t.Fatal("required_labels.rego no longer reads lib.webhook: update this test")
	}
	r, err := server.NewRegoRules(ctx, b, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	c := seedCluster()
	mirror(t, r, c)
	e := loadEvaluator(t, "testdata/seed-rego.yaml")
	if err := r.SetConfig(ctx, e.Config()); err != nil {
		t.Fatal(err)
	}
	v := server.NewValidator(server.Static{E: e, R: r}, c, logr.Discard())
	resp := v.Handle(ctx, request(t, admissionv1.Create, pod("default", "b", map[string]string{"run": "b"}), nil))
	if resp.Allowed || !strings.Contains(resp.Result.Message, `label "access" is required (the bundle in force`) {
		t.Errorf("allowed %v: %+v", resp.Allowed, resp.Result)
	}
	if c := resp.Result.Details.Causes; len(c) != 1 || c[0].Type != "requiredLabels/missing-label" || c[0].Field != "metadata.labels[access]" {
		t.Errorf("causes %+v", c)
	}
}

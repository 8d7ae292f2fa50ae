package rules

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/open-policy-agent/opa/v1/bundle"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/podwall/podwall/manifest"
)

// testConfig is an AdmissionConfiguration in the shape webhook/config
// loads, plus protectedAccess.
const testConfig = `{
  "apiVersion": "podwall.io/v1alpha1",
  "kind": "AdmissionConfiguration",
  "rules": {
    "requiredLabels": {"labels": [{"key": "app.kubernetes.io/name"}, {"key": "team", "allowedValues": ["web", "data"], "default": "web"}]},
    "defaultDeny": {"policyTypes": ["Ingress"], "match": {"namespaceSelector": {"matchLabels": {"env": "prod"}}}},
    "networkPolicyHygiene": {"enforcementAction": "warn"},
    "protectedAccess": {"protectedSelector": {"matchLabels": {"name": "networkpolicy-demo"}}}
  }
}`

// seedEvaluator is an Evaluator on the embedded rules with testConfig and
// the seed cluster at stage 1 (namespace default labelled env=prod, with a
// default deny).
func seedEvaluator(t testing.TB) *Evaluator {
	t.Helper()
	ctx := context.Background()
	ev, err := NewEvaluator(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg any
	if err := json.Unmarshal([]byte(testConfig), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := ev.SetConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	set, err := manifest.Load(seedDir+"/cluster", seedDir+"/original/networkpolicy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default", Labels: map[string]string{"env": "prod"}}}
	must(ev.SetData(ctx, "/kubernetes/namespaces/default", ns))
	for _, p := range set.Pods {
		must(ev.SetData(ctx, "/kubernetes/pods/"+p.Namespace+"/"+p.Name, p))
	}
	for _, np := range set.NetworkPolicies {
		must(ev.SetData(ctx, "/kubernetes/networkpolicies/"+np.Namespace+"/"+np.Name, np))
	}
	deny := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "default-deny", Namespace: "default"}}
	must(ev.SetData(ctx, "/kubernetes/networkpolicies/default/default-deny", deny))
	return ev
}

func request(t testing.TB, op admissionv1.Operation, kind string, obj, old any) *admissionv1.AdmissionRequest {
	t.Helper()
	raw := func(o any) runtime.RawExtension {
		if o == nil {
			return runtime.RawExtension{}
		}
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		return runtime.RawExtension{Raw: b}
	}
	group := ""
	if kind == "NetworkPolicy" {
		group = "networking.k8s.io"
	}
	meta := func(o any) metav1.Object {
		if m, ok := o.(metav1.Object); ok {
			return m
		}
		return nil
	}
	m := meta(obj)
	if m == nil {
		m = meta(old)
	}
	return &admissionv1.AdmissionRequest{
		UID:       "uid-1",
		Kind:      metav1.GroupVersionKind{Group: group, Version: "v1", Kind: kind},
		Operation: op,
		Namespace: m.GetNamespace(),
		Name:      m.GetName(),
		Object:    raw(obj),
		OldObject: raw(old),
	}
}

func pod(name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}},
	}
}

func rulesOf(ms []Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Rule)
	}
	return out
}

func TestEvaluatorRequiredLabels(t *testing.T) {
	ctx := context.Background()
	ev := seedEvaluator(t)

	res, err := ev.Eval(ctx, request(t, admissionv1.Create, "Pod", pod("web", map[string]string{"app.kubernetes.io/name": "web"}), nil))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Allowed() || len(res.Violations) != 0 {
		t.Errorf("violations %v", res.Violations)
	}
	want := []PatchOperation{{Op: "add", Path: "/metadata/labels/team", Value: "web"}}
	if len(res.Patch) != 1 || res.Patch[0] != want[0] {
		t.Errorf("patch %v, want %v", res.Patch, want)
	}
	if p, _ := res.PatchJSON(); string(p) != `[{"op":"add","path":"/metadata/labels/team","value":"web"}]` {
		t.Errorf("patch JSON %s", p)
	}
	if !slices.Equal(rulesOf(res.Warnings), []string{"requiredLabels"}) {
		t.Errorf("warnings %v", res.Warnings)
	}

	res, err = ev.Eval(ctx, request(t, admissionv1.Create, "Pod", pod("web", map[string]string{"team": "ops"}), nil))
	if err != nil {
		t.Fatal(err)
	}
	if res.Allowed() || len(res.Violations) != 2 || !slices.Equal(rulesOf(res.Violations), []string{"requiredLabels", "requiredLabels"}) {
		t.Errorf("violations %v", res.Violations)
	}
}

func TestEvaluatorProtectedAccessAndHygiene(t *testing.T) {
	ctx := context.Background()
	ev := seedEvaluator(t)
	open := &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: "open-httpd", Namespace: "default"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"name": "networkpolicy-demo"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}}},
			}},
		},
	}
	res, err := ev.Eval(ctx, request(t, admissionv1.Create, "NetworkPolicy", open, nil))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res.Violations); n != 3 || !slices.Equal(slices.Compact(rulesOf(res.Violations)), []string{"protectedAccess"}) {
		t.Errorf("violations %v, want 3 of protectedAccess", res.Violations)
	}
	// networkPolicyHygiene is warn: its findings are warnings.
	if !slices.Contains(rulesOf(res.Warnings), "networkPolicyHygiene") {
		t.Errorf("warnings %v lack networkPolicyHygiene", res.Warnings)
	}
	for _, v := range res.Violations {
		if !strings.Contains(v.Msg, "(default/busybox") {
			t.Errorf("message %q does not name busybox", v.Msg)
		}
	}
}

// storeUnparsablePod puts default/weird, whose address does not parse, in
// the Evaluator's data.kubernetes, and returns a NetworkPolicy opening
// every pod of default (the protected httpd pods among them) to all.
func storeUnparsablePod(t *testing.T, ev *Evaluator) *networkingv1.NetworkPolicy {
	t.Helper()
	bad := pod("weird", map[string]string{"run": "x"})
	bad.Status.PodIP = "not-an-ip"
	if err := ev.SetData(t.Context(), "/kubernetes/pods/default/weird", bad); err != nil {
		t.Fatal(err)
	}
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "everyone", Namespace: "default"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{}, Ingress: []networkingv1.NetworkPolicyIngressRule{{}}}}
}

// TestEvaluatorClusterPolicylibRefuses: an object in the cluster state
// that policylib refuses (a pod with an unparsable address) makes
// protectedAccess fail closed by itself, naming the object, and the other
// rules' findings stand.
func TestEvaluatorClusterPolicylibRefuses(t *testing.T) {
	ctx := context.Background()
	ev := seedEvaluator(t)
	np := storeUnparsablePod(t, ev)
	res, err := ev.Eval(ctx, request(t, admissionv1.Create, "NetworkPolicy", np, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Violations) != 1 || res.Violations[0].Code != "undecided-flows" || !strings.Contains(res.Violations[0].Msg, "not-an-ip") {
		t.Errorf("violations %+v, want protectedAccess undecided-flows naming not-an-ip", res.Violations)
	}
	if !slices.Contains(rulesOf(res.Warnings), "networkPolicyHygiene") {
		t.Errorf("warnings %v lack networkPolicyHygiene's", res.Warnings)
	}
	if err := ev.DeleteData(ctx, "/kubernetes/pods/default/weird"); err != nil {
		t.Fatal(err)
	}
	if err := ev.DeleteData(ctx, "/kubernetes/pods/default/weird"); err != nil {
		t.Errorf("deleting a missing document: %v", err)
	}
	res, err = ev.Eval(ctx, request(t, admissionv1.Create, "NetworkPolicy", np, nil))
	if err != nil || slices.ContainsFunc(res.Violations, func(m Message) bool { return m.Code == "undecided-flows" }) {
		t.Fatalf("after the fix: %+v, %v", res, err)
	}

	// A stored policy policylib refuses (stored before the API server
	// validated CIDRs strictly) selecting the protected pods can be fixed:
	// the cluster before the change cannot be decided, the one after can.
	legacy := &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: "legacy", Namespace: "default"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"name": "networkpolicy-demo"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "192.168.2.1/24"}}},
			}},
		},
	}
	if err := ev.SetData(ctx, "/kubernetes/networkpolicies/default/legacy", legacy); err != nil {
		t.Fatal(err)
	}
	fixed := legacy.DeepCopy()
	fixed.Spec.Ingress[0].From[0].IPBlock.CIDR = "192.168.2.0/24"
	res, err = ev.Eval(ctx, request(t, admissionv1.Update, "NetworkPolicy", fixed, legacy))
	if err != nil || slices.ContainsFunc(res.Violations, func(m Message) bool { return m.Rule == "protectedAccess" }) {
		t.Errorf("fixing the legacy policy: %+v, %v", res, err)
	}
	// Any other change is refused by protectedAccess, naming the policy.
	res, err = ev.Eval(ctx, request(t, admissionv1.Create, "NetworkPolicy", np, nil))
	if err != nil || !slices.ContainsFunc(res.Violations, func(m Message) bool {
		return m.Code == "undecided-flows" && strings.Contains(m.Msg, "default/legacy")
	}) {
		t.Errorf("with the legacy policy stored: %+v, %v", res, err)
	}
}

// TestEvaluatorInvalidPolicy: a policy the API server would reject, down to
// a selector that does not parse, fails protectedAccess closed by itself;
// the evaluation stands and hygiene says what is invalid.
func TestEvaluatorInvalidPolicy(t *testing.T) {
	ctx := context.Background()
	ev := seedEvaluator(t)
	np := &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: "default"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "name", Operator: "Foo"}}},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{}},
		},
	}
	res, err := ev.Eval(ctx, request(t, admissionv1.Create, "NetworkPolicy", np, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Violations) != 1 || res.Violations[0].Rule != "protectedAccess" || res.Violations[0].Code != "undecided-flows" {
		t.Errorf("violations %+v, want protectedAccess undecided-flows", res.Violations)
	}
	// networkPolicyHygiene is warn in testConfig.
	if !slices.ContainsFunc(res.Warnings, func(m Message) bool { return m.Rule == "networkPolicyHygiene" && m.Code == "invalid" }) {
		t.Errorf("warnings %+v lack hygiene's invalid", res.Warnings)
	}
}

// TestEvaluatorStrictBuiltinErrors: a built-in's error fails the
// evaluation with its message instead of leaving the rule undefined (here
// protectedAccess modified to decide without checking the cluster first).
func TestEvaluatorStrictBuiltinErrors(t *testing.T) {
	ctx := context.Background()
	ev := seedEvaluator(t)
	const path = "podwall/admission/protected_access/protected_access.rego"
	if err := ev.Reload(ctx, modifiedBundle(t, "unguarded", path, "decidable if count(refused) == 0", "decidable := true")); err != nil {
		t.Fatal(err)
	}
	np := storeUnparsablePod(t, ev)
	_, err := ev.Eval(ctx, request(t, admissionv1.Create, "NetworkPolicy", np, nil))
	if err == nil || !strings.Contains(err.Error(), "podwall.decide") || !strings.Contains(err.Error(), "not-an-ip") {
		t.Fatalf("err %v, want podwall.decide's complaint about not-an-ip", err)
	}
}

// modifiedBundle is the embedded bundle with one module's source replaced.
func modifiedBundle(t testing.TB, revision, path, from, to string) *bundle.Bundle {
	t.Helper()
	b, err := BuildBundle(t.Context(), withFiles(t, map[string]string{path: strings.Replace(readSource(t, path), from, to, 1)}), revision)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readSource(t testing.TB, path string) string {
	t.Helper()
	for _, m := range mustBundle(t).Modules {
		if m.Path == path {
			return string(m.Raw)
		}
	}
	t.Fatalf("no module %s", path)
	return ""
}

func mustBundle(t testing.TB) *bundle.Bundle {
	t.Helper()
	b, err := Bundle("")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEvaluatorReload(t *testing.T) {
	ctx := context.Background()
	ev := seedEvaluator(t)
	req := request(t, admissionv1.Create, "Pod", pod("web", map[string]string{"team": "web"}), nil)
	msg := func() string {
		t.Helper()
		res, err := ev.Eval(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Violations) != 1 {
			t.Fatalf("violations %v", res.Violations)
		}
		return res.Violations[0].Msg
	}
	if m := msg(); !strings.Contains(m, "is required") {
		t.Fatalf("message %q", m)
	}

	// A changed bundle takes over.
	b2 := modifiedBundle(t, "rev-2", "podwall/admission/required_labels/required_labels.rego", `%q is required%s; %s"`, `%q is required%s; %s (rev 2)"`)
	if err := ev.Reload(ctx, b2); err != nil {
		t.Fatal(err)
	}
	if ev.Revision() != "rev-2" || !strings.HasSuffix(msg(), "(rev 2)") {
		t.Errorf("after Reload: revision %q, message %q", ev.Revision(), msg())
	}

	// A bundle that does not compile is refused with the compiler's errors;
	// rev-2 stays in force.
	broken := *b2
	broken.Manifest.Revision = "rev-3"
	broken.Modules = slices.Clone(b2.Modules)
	for i, m := range broken.Modules {
		if m.Path == "podwall/lib/lib.rego" {
			m.Parsed = nil
			m.Raw = []byte(strings.Replace(string(m.Raw), "default config := {}", "default config := podwall.nope(1)", 1))
			broken.Modules[i] = m
		}
	}
	err := ev.Reload(ctx, &broken)
	if err == nil || !strings.Contains(err.Error(), "rev-3") || !strings.Contains(err.Error(), "podwall.nope") {
		t.Fatalf("broken bundle: %v", err)
	}
	if ev.Revision() != "rev-2" || !strings.HasSuffix(msg(), "(rev 2)") {
		t.Errorf("after a refused Reload: revision %q", ev.Revision())
	}

	// A bundle without the entry points is refused too.
	empty := &bundle.Bundle{Manifest: bundle.Manifest{Revision: "empty"}, Data: map[string]any{}}
	if err := ev.Reload(ctx, empty); err == nil || !strings.Contains(err.Error(), "data.podwall.admission.deny") {
		t.Errorf("bundle without rules: %v", err)
	}

	// Bundle data is merged into the store; the config written with
	// SetConfig survives.
	b4, _ := Bundle("rev-4")
	b4.Data = map[string]any{"podwall": map[string]any{"extra": true}}
	if err := ev.Reload(ctx, b4); err != nil {
		t.Fatal(err)
	}
	if m := msg(); !strings.Contains(m, "is required") {
		t.Errorf("after rev-4: %q", m)
	}
}

// TestEvaluatorConcurrentReload evaluates from many goroutines while
// bundles are swapped (run with -race).
func TestEvaluatorConcurrentReload(t *testing.T) {
	ctx := context.Background()
	ev := seedEvaluator(t)
	b1 := mustBundle(t)
	b2 := modifiedBundle(t, "rev-2", "podwall/admission/required_labels/required_labels.rego", `%q is required%s; %s"`, `%q is required%s; %s (rev 2)"`)
	req := request(t, admissionv1.Create, "Pod", pod("web", map[string]string{"team": "web"}), nil)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 25 {
				res, err := ev.Eval(ctx, req)
				if err != nil {
					t.Error(err)
					return
				}
				if len(res.Violations) != 1 {
					t.Errorf("goroutine %d eval %d: %v", g, i, res.Violations)
				}
			}
		})
	}
	for i := range 6 {
		b := b1
		if i%2 == 0 {
			b = b2
		}
		if err := ev.Reload(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

func TestEvaluatorRejectsNil(t *testing.T) {
	ev := seedEvaluator(t)
	if _, err := ev.Eval(context.Background(), nil); err == nil {
		t.Error("nil request accepted")
	}
	if err := ev.SetData(context.Background(), "nope", 1); err == nil {
		t.Error("relative data path accepted")
	}
}

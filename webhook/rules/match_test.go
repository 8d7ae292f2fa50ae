package rules_test

import (
	"context"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/podwall/podwall/webhook/config"
	"github.com/podwall/podwall/webhook/rules"
)

// TestMatch covers exemptions and every match condition, on a
// requiredLabels rule (a pod without labels violates it whenever matched).
func TestMatch(t *testing.T) {
	c := rules.NewMemoryCluster(
		namespace("shop", map[string]string{"team": "a"}),
		namespace("lab", map[string]string{"team": "b"}),
	)
	rule := func(match string) string {
		return "rules:\n  requiredLabels:\n    labels: [{key: access}]\n" + match
	}
	tests := []struct {
		name    string
		cfg     string
		ns      string
		labels  map[string]string // the pod's own labels (never "access")
		matched bool
	}{
		{"everything by default", rule(""), "shop", nil, true},
		{"kube-system exempt by default", rule(""), "kube-system", nil, false},
		{"podwall-system exempt by default", rule(""), "podwall-system", nil, false},
		{"explicit exemptions replace the defaults", "exemptNamespaces: [lab]\n" + rule(""), "kube-system", nil, true},
		{"explicit exemption", "exemptNamespaces: [lab]\n" + rule(""), "lab", nil, false},
		{"no exemptions at all", "exemptNamespaces: []\n" + rule(""), "kube-system", nil, true},
		{"excluded by the rule", rule("    match: {excludedNamespaces: [shop]}\n"), "shop", nil, false},
		{"not excluded by the rule", rule("    match: {excludedNamespaces: [shop]}\n"), "lab", nil, true},
		{"in the rule's namespaces", rule("    match: {namespaces: [shop]}\n"), "shop", nil, true},
		{"not in the rule's namespaces", rule("    match: {namespaces: [shop]}\n"), "lab", nil, false},
		{"exemption beats namespaces", rule("    match: {namespaces: [kube-system]}\n"), "kube-system", nil, false},
		{"namespaceSelector matches", rule("    match: {namespaceSelector: {matchLabels: {team: a}}}\n"), "shop", nil, true},
		{"namespaceSelector does not match", rule("    match: {namespaceSelector: {matchLabels: {team: a}}}\n"), "lab", nil, false},
		{"namespaceSelector on the name label", rule("    match: {namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [lab]}]}}\n"), "lab", nil, true},
		{"namespaceSelector, unknown namespace has only its name", rule("    match: {namespaceSelector: {matchExpressions: [{key: team, operator: DoesNotExist}]}}\n"), "ghost", nil, true},
		{"NotIn matches a missing label", rule("    match: {namespaceSelector: {matchExpressions: [{key: team, operator: NotIn, values: [a]}]}}\n"), "ghost", nil, true},
		{"objectSelector matches", rule("    match: {objectSelector: {matchLabels: {tier: web}}}\n"), "shop", map[string]string{"tier": "web"}, true},
		{"objectSelector does not match", rule("    match: {objectSelector: {matchLabels: {tier: web}}}\n"), "shop", map[string]string{"tier": "db"}, false},
		{"objectSelector opt-out", rule("    match: {objectSelector: {matchExpressions: [{key: skip, operator: DoesNotExist}]}}\n"), "shop", map[string]string{"skip": "yes"}, false},
		{"kinds: not pods", rule("    match: {kinds: [Deployment]}\n"), "shop", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := evaluator(t, tt.cfg)
			r := validate(t, e, c, admissionv1.Create, pod(tt.ns, "p", tt.labels), nil)
			if matched := len(r.Violations) > 0; matched != tt.matched {
				t.Errorf("matched = %v, want %v: %s", matched, tt.matched, describe(r))
			}
			checkInvariants(t, r)
		})
	}
	// On UPDATE the objectSelector matches the old or the new object.
	e := evaluator(t, rule("    match: {objectSelector: {matchLabels: {tier: web}}}\n"))
	newPod := pod("shop", "p", map[string]string{"tier": "db"})
	oldPod := pod("shop", "p", map[string]string{"tier": "web", "access": "x"})
	checkResult(t, validate(t, e, c, admissionv1.Update, newPod, oldPod), "deny requiredLabels missing-label")
	checkResult(t, validate(t, e, c, admissionv1.Update, newPod, newPod))
	// A workload's objectSelector looks at the workload's labels, not its template's.
	d := workload("Deployment", "shop", "d", map[string]string{"tier": "web"})
	checkResult(t, validate(t, e, c, admissionv1.Create, d, nil))
}

// TestRequests covers requests the rules do not expect.
func TestRequests(t *testing.T) {
	e := evaluator(t, labelsConfig(config.Deny, "false")+"  networkPolicyHygiene: {enforcementAction: warn}\n")
	podKind := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	raw := func(op admissionv1.Operation, kind metav1.GroupVersionKind, ns, data string) *admissionv1.AdmissionRequest {
		return &admissionv1.AdmissionRequest{Operation: op, Kind: kind, Namespace: ns, Object: runtime.RawExtension{Raw: []byte(data)}}
	}
	tests := []struct {
		name string
		req  *admissionv1.AdmissionRequest
		want []string
		msg  string
	}{
		{"nil request", nil, []string{"deny podwall undecodable"}, "no admission request"},
		{"matched kind, garbage", raw(admissionv1.Create, podKind, "shop", "{not json"), []string{"deny podwall undecodable"}, "cannot decode the v1 Pod"},
		{"matched kind, no object", raw(admissionv1.Create, podKind, "shop", ""), []string{"deny podwall undecodable"}, "carries no Pod object"},
		{"matched kind, wrong object", raw(admissionv1.Create, podKind, "shop", `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"}}`), []string{"deny podwall undecodable"}, "is for a v1 Pod, but the object is a v1 Service"},
		{"matched kind, wrong version", raw(admissionv1.Create, metav1.GroupVersionKind{Group: "apps", Version: "v1beta1", Kind: "Deployment"}, "shop", `{"apiVersion":"apps/v1beta1","kind":"Deployment","metadata":{"name":"d"}}`), []string{"deny podwall undecodable"}, "is for a apps/v1 Deployment, but the object is a apps/v1beta1 Deployment"},
		{"matched kind, wrong field type", raw(admissionv1.Create, podKind, "shop", `{"metadata":{"labels":"x"}}`), []string{"deny podwall undecodable"}, "cannot decode"},
		{"matched warn rule, garbage: warned", raw(admissionv1.Create, metav1.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"}, "shop", "nope"), []string{"warn podwall undecodable"}, "networkPolicyHygiene"},
		{"unmatched kind, garbage", raw(admissionv1.Create, metav1.GroupVersionKind{Version: "v1", Kind: "Service"}, "shop", "{not json"), nil, ""},
		{"same kind name, other group", raw(admissionv1.Create, metav1.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Pod"}, "shop", "{}"), nil, ""},
		{"matched kind in an exempt namespace, garbage", raw(admissionv1.Create, podKind, "kube-system", "{not json"), nil, ""},
		{"subresource", func() *admissionv1.AdmissionRequest {
			r := raw(admissionv1.Update, podKind, "shop", "{not json")
			r.SubResource = "status"
			return r
		}(), nil, ""},
		{"CONNECT", raw(admissionv1.Connect, podKind, "shop", "{}"), nil, ""},
		{"kind from the object when the request has none", raw(admissionv1.Create, metav1.GroupVersionKind{}, "shop", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}`), []string{"deny requiredLabels missing-label"}, ""},
		{"namespace from the object", raw(admissionv1.Create, podKind, "", `{"metadata":{"name":"p","namespace":"kube-system"}}`), nil, ""},
		{"no namespace anywhere: default", raw(admissionv1.Create, podKind, "", `{"metadata":{"name":"p"}}`), []string{"deny requiredLabels missing-label"}, "Pod default/p"},
		{"generateName", raw(admissionv1.Create, podKind, "shop", `{"metadata":{"generateName":"web-"}}`), []string{"deny requiredLabels missing-label"}, "Pod shop/web-*"},
		{"truncated", raw(admissionv1.Create, podKind, "shop", `{"metadata":{"name":"p"}`), []string{"deny podwall undecodable"}, "cannot decode"},
		{"not an object", raw(admissionv1.Create, podKind, "shop", `[]`), []string{"deny podwall undecodable"}, "cannot decode"},
		{"metadata after spec", raw(admissionv1.Create, podKind, "shop", `{"spec":{"containers":[]},"metadata":{"name":"p","labels":{"access":"true"}},"kind":"Pod","apiVersion":"v1"}`), nil, ""},
		{"field names are case-sensitive", raw(admissionv1.Create, podKind, "shop", `{"metadata":{"name":"p","Labels":{"access":"true"}}}`), []string{"deny requiredLabels missing-label"}, ""},
		{"YAML object", raw(admissionv1.Create, podKind, "shop", "metadata:\n  name: p\n  labels: {access: 'true'}\n"), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.Validate(context.Background(), tt.req, nil)
			checkResult(t, r, tt.want...)
			if tt.msg != "" && !strings.Contains(r.Violations[0].Message, tt.msg) {
				t.Errorf("message %q lacks %q", r.Violations[0].Message, tt.msg)
			}
			if m := e.Mutate(context.Background(), tt.req, nil); !m.Allowed {
				t.Errorf("Mutate denied: %s", describe(m))
			}
		})
	}
	// A cancelled context fails closed for matched requests only.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	checkResult(t, e.Validate(ctx, request(t, admissionv1.Create, pod("shop", "p", nil), nil), nil), "deny podwall cancelled")
	checkResult(t, e.Validate(ctx, request(t, admissionv1.Create, service("shop", "s", nil, 80, 80), nil), nil))
	//lint:ignore SA1012 a nil context must not panic either
	checkResult(t, e.Validate(nil, request(t, admissionv1.Create, pod("shop", "p", map[string]string{"access": "true"}), nil), nil))
}

func TestNew(t *testing.T) {
	if _, err := rules.New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
	// New validates, and names every problem.
	bad := &config.AdmissionConfiguration{Rules: config.Rules{RequiredLabels: &config.RequiredLabelsRule{Common: config.Common{EnforcementAction: "block"}}}}
	bad.APIVersion, bad.Kind = config.APIVersion, config.Kind
	_, err := rules.New(bad)
	if err == nil || !strings.Contains(err.Error(), "rules.requiredLabels.enforcementAction") || !strings.Contains(err.Error(), "rules.requiredLabels.labels") {
		t.Errorf("New(bad) = %v", err)
	}
	// New defaults a copy and leaves its argument alone.
	good := &config.AdmissionConfiguration{Rules: config.Rules{NetworkPolicyHygiene: &config.NetworkPolicyHygieneRule{}}}
	good.APIVersion, good.Kind = config.APIVersion, config.Kind
	e, err := rules.New(good)
	if err != nil {
		t.Fatal(err)
	}
	if good.ExemptNamespaces != nil || good.Rules.NetworkPolicyHygiene.EnforcementAction != "" {
		t.Error("New modified its argument")
	}
	if e.Config().Rules.NetworkPolicyHygiene.EnforcementAction != config.Deny || len(e.Config().ExemptNamespaces) != 2 {
		t.Errorf("Config() not defaulted: %+v", e.Config())
	}
	if got := e.Rules(); len(got) != 1 || got[0] != config.RuleNetworkPolicyHygiene {
		t.Errorf("Rules() = %v", got)
	}
	// The canonical example builds.
	cfg, err := config.Load("../config/testdata/podwall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if e, err = rules.New(cfg); err != nil || len(e.Rules()) != 3 {
		t.Errorf("podwall.yaml: %v, rules %v", err, e.Rules())
	}
}

package rules_test

import (
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/podwall/podwall/policylib"
	"github.com/podwall/podwall/webhook/config"
	"github.com/podwall/podwall/webhook/rules"
)

var protectedNS = namespace("shop", map[string]string{"protected": "true"})

// TestDefaultDenyCreate: creating any pod kind in a protected namespace
// needs the default deny, for each configured direction.
func TestDefaultDenyCreate(t *testing.T) {
	denyIn := policy(t, "shop", "deny-in", denyIngressSpec)
	denyOut := policy(t, "shop", "deny-out", "  podSelector: {}\n  policyTypes: [Egress]\n")
	denyBoth := policy(t, "shop", "deny-all", "  podSelector: {}\n  policyTypes: [Ingress, Egress]\n")
	notDeny := policy(t, "shop", "web", "  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [{podSelector: {}}]}]\n")
	allowAll := policy(t, "shop", "allow", "  podSelector: {}\n  ingress: [{}]\n")
	tests := []struct {
		name     string
		types    string
		cluster  []runtime.Object
		missing  string // "" when allowed
		reported bool
	}{
		{"no policy at all", "Ingress", []runtime.Object{protectedNS}, "Ingress", true},
		{"only a policy that is no default deny", "Ingress", []runtime.Object{protectedNS, notDeny, allowAll}, "Ingress", true},
		{"default deny ingress", "Ingress", []runtime.Object{protectedNS, denyIn, notDeny}, "", false},
		{"egress required too", "Ingress, Egress", []runtime.Object{protectedNS, denyIn}, "Egress", true},
		{"two policies, one per direction", "Ingress, Egress", []runtime.Object{protectedNS, denyIn, denyOut}, "", false},
		{"one policy for both", "Ingress, Egress", []runtime.Object{protectedNS, denyBoth}, "", false},
		{"both missing", "Ingress, Egress", []runtime.Object{protectedNS}, "Ingress and Egress", true},
		{"unprotected namespace", "Ingress", []runtime.Object{namespace("shop", nil)}, "", false},
		{"unknown namespace is unprotected", "Ingress", nil, "", false},
	}
	for _, action := range actions {
		for _, tt := range tests {
			e := evaluator(t, denyConfig(action, tt.types))
			c := rules.NewMemoryCluster(tt.cluster...)
			for _, kind := range podKinds {
				t.Run(string(action)+"/"+tt.name+"/"+kind, func(t *testing.T) {
					r := validate(t, e, c, admissionv1.Create, podKindObject(kind, "shop", "x", nil), nil)
					if tt.missing == "" {
						checkResult(t, r)
						return
					}
					checkResult(t, r, string(action)+" defaultDeny missing-default-deny")
					msg := r.Violations[0].Message
					for _, want := range []string{
						"namespace shop has no default-deny NetworkPolicy for " + tt.missing,
						"before " + kind + " shop/x can be created",
						"apply NetworkPolicy shop/default-deny first:\n",
					} {
						if !strings.Contains(msg, want) {
							t.Errorf("message lacks %q:\n%s", want, msg)
						}
					}
					// The snippet is the policy to apply, and it satisfies the rule.
					_, snippet, _ := strings.Cut(msg, ":\n")
					var np networkingv1.NetworkPolicy
					if err := yaml.UnmarshalStrict([]byte(snippet), &np); err != nil {
						t.Fatalf("snippet is not a NetworkPolicy: %v\n%s", err, snippet)
					}
					if np.Namespace != "shop" || np.Name != "default-deny" || !policylib.IsDefaultDeny(&np, policylib.Ingress) {
						t.Errorf("snippet policy %+v", np)
					}
					c2 := rules.NewMemoryCluster(append(tt.cluster, &np)...)
					checkResult(t, validate(t, e, c2, admissionv1.Create, podKindObject(kind, "shop", "x", nil), nil))
					if action == config.Warn && (len(r.Warnings) != 1 || strings.Contains(r.Warnings[0], "apiVersion")) {
						t.Errorf("warning should be the summary only: %q", r.Warnings)
					}
				})
			}
		}
	}
	// UPDATE of a pod or workload is not checked, nor is DELETE.
	e := evaluator(t, denyConfig(config.Deny, "Ingress"))
	c := rules.NewMemoryCluster(protectedNS)
	p := pod("shop", "x", nil)
	checkResult(t, validate(t, e, c, admissionv1.Update, p, p))
	checkResult(t, validate(t, e, c, admissionv1.Delete, nil, p))
	// generate: true says the controller is on it.
	e = evaluator(t, denyConfig(config.Deny, "Ingress")+"    generate: true\n    policyName: deny-by-default\n")
	r := validate(t, e, c, admissionv1.Create, p, nil)
	if !strings.Contains(r.Message(), "generate is on") || !strings.Contains(r.Message(), "name: deny-by-default") {
		t.Errorf("generate: %s", r.Message())
	}
}

// TestDefaultDenyProtectLast: DELETE of, or an UPDATE that weakens, the last
// default deny of a protected namespace is refused.
func TestDefaultDenyProtectLast(t *testing.T) {
	deny := policy(t, "shop", "default-deny", denyIngressSpec)
	other := policy(t, "shop", "other-deny", denyIngressSpec)
	denyBoth := policy(t, "shop", "default-deny", "  podSelector: {}\n  policyTypes: [Ingress, Egress]\n")
	web := policy(t, "shop", "web", "  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [{podSelector: {}}]}]\n")
	weakened := policy(t, "shop", "default-deny", "  podSelector: {}\n  ingress: [{from: [{podSelector: {}}]}]\n")
	narrowed := policy(t, "shop", "default-deny", "  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Ingress]\n")
	relabelled := deny.DeepCopy()
	relabelled.Labels = map[string]string{"team": "a"}
	onlyIngress := policy(t, "shop", "default-deny", denyIngressSpec)
	terminating := protectedNS.DeepCopy()
	terminating.Status.Phase = corev1.NamespaceTerminating

	type tc struct {
		name       string
		types      string
		cluster    []runtime.Object
		op         admissionv1.Operation
		obj, old   runtime.Object
		noOld      bool // DELETE without oldObject (older API servers)
		lost       string
		wantUpdate bool
	}
	tests := []tc{
		{name: "delete the last", types: "Ingress", cluster: []runtime.Object{protectedNS, deny, web}, op: admissionv1.Delete, old: deny, lost: "Ingress"},
		{name: "delete the last, found in the cluster", types: "Ingress", cluster: []runtime.Object{protectedNS, deny, web}, op: admissionv1.Delete, old: deny, noOld: true, lost: "Ingress"},
		{name: "delete one of two", types: "Ingress", cluster: []runtime.Object{protectedNS, deny, other}, op: admissionv1.Delete, old: deny},
		{name: "delete a policy that is no default deny", types: "Ingress", cluster: []runtime.Object{protectedNS, deny, web}, op: admissionv1.Delete, old: web},
		{name: "delete unknown policy", types: "Ingress", cluster: []runtime.Object{protectedNS}, op: admissionv1.Delete, old: deny, noOld: true},
		{name: "delete in an unprotected namespace", types: "Ingress", cluster: []runtime.Object{namespace("shop", nil), deny}, op: admissionv1.Delete, old: deny},
		{name: "delete in a terminating namespace", types: "Ingress", cluster: []runtime.Object{terminating, deny}, op: admissionv1.Delete, old: deny},
		{name: "delete the last egress deny", types: "Ingress, Egress", cluster: []runtime.Object{protectedNS, denyBoth, other}, op: admissionv1.Delete, old: denyBoth, lost: "Egress"},
		{name: "delete an egress deny nobody requires", types: "Ingress", cluster: []runtime.Object{protectedNS, denyBoth, other}, op: admissionv1.Delete, old: denyBoth},
		{name: "update adding an ingress rule", types: "Ingress", cluster: []runtime.Object{protectedNS, deny}, op: admissionv1.Update, obj: weakened, old: deny, lost: "Ingress", wantUpdate: true},
		{name: "update narrowing the podSelector", types: "Ingress", cluster: []runtime.Object{protectedNS, deny}, op: admissionv1.Update, obj: narrowed, old: deny, lost: "Ingress", wantUpdate: true},
		{name: "update dropping egress", types: "Ingress, Egress", cluster: []runtime.Object{protectedNS, denyBoth}, op: admissionv1.Update, obj: onlyIngress, old: denyBoth, lost: "Egress", wantUpdate: true},
		{name: "update keeping it a deny", types: "Ingress", cluster: []runtime.Object{protectedNS, deny}, op: admissionv1.Update, obj: relabelled, old: deny},
		{name: "update weakening one of two", types: "Ingress", cluster: []runtime.Object{protectedNS, deny, other}, op: admissionv1.Update, obj: weakened, old: deny},
		{name: "create is not this rule's business", types: "Ingress", cluster: []runtime.Object{protectedNS}, op: admissionv1.Create, obj: weakened},
	}
	for _, action := range actions {
		for _, tt := range tests {
			t.Run(string(action)+"/"+tt.name, func(t *testing.T) {
				e := evaluator(t, denyConfig(action, tt.types))
				req := request(t, tt.op, tt.obj, tt.old)
				if tt.noOld {
					req.OldObject = runtime.RawExtension{}
				}
				r := e.Validate(t.Context(), req, rules.NewMemoryCluster(tt.cluster...))
				if tt.lost == "" {
					checkResult(t, r)
					return
				}
				checkResult(t, r, string(action)+" defaultDeny last-default-deny")
				msg := r.Violations[0].Message
				want := []string{"NetworkPolicy shop/default-deny is the last default deny for " + tt.lost + " in namespace shop"}
				if tt.wantUpdate {
					want = append(want, "this update")
				} else {
					want = append(want, "deleting it")
				}
				for _, w := range want {
					if !strings.Contains(msg, w) {
						t.Errorf("message lacks %q: %s", w, msg)
					}
				}
			})
		}
	}
	// NetworkPolicy can be left out of the rule's kinds.
	e := evaluator(t, denyConfig(config.Deny, "Ingress")+"      kinds: [Pod]\n")
	checkResult(t, validate(t, e, rules.NewMemoryCluster(protectedNS, deny), admissionv1.Delete, nil, deny))
	// A namespace being deleted by timestamp, before its phase changes.
	deleting := protectedNS.DeepCopy()
	now := metav1.Now()
	deleting.DeletionTimestamp = &now
	e = evaluator(t, denyConfig(config.Deny, "Ingress"))
	checkResult(t, validate(t, e, rules.NewMemoryCluster(deleting, deny), admissionv1.Delete, nil, deny))
}

func TestProtects(t *testing.T) {
	e := evaluator(t, denyConfig(config.Deny, "Ingress, Egress")+"    policyName: deny-all\n")
	if !e.Protects(protectedNS) || e.Protects(namespace("other", nil)) || e.Protects(namespace("kube-system", map[string]string{"protected": "true"})) || e.Protects(nil) {
		t.Error("Protects")
	}
	np := e.DefaultDenyPolicy("shop")
	if np.Name != "deny-all" || len(np.Spec.PolicyTypes) != 2 {
		t.Errorf("DefaultDenyPolicy = %+v", np)
	}
	// A rego defaultDeny rule is not evaluated but still protects.
	e = evaluator(t, denyConfig(config.Deny, "Ingress")+"    engine: rego\n")
	if !e.Protects(protectedNS) || len(e.Rules()) != 0 {
		t.Errorf("rego rule: protects %v, rules %v", e.Protects(protectedNS), e.Rules())
	}
	checkResult(t, validate(t, e, rules.NewMemoryCluster(protectedNS), admissionv1.Create, pod("shop", "p", nil), nil))
	// No rule: nothing protected, no policy.
	e = evaluator(t, "rules: {}\n")
	if e.Protects(protectedNS) || e.DefaultDenyPolicy("shop") != nil {
		t.Error("no rule")
	}
}

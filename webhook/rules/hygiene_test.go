package rules_test

import (
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/podwall/podwall/policylib"
	"github.com/podwall/podwall/webhook/config"
	"github.com/podwall/podwall/webhook/rules"
)

func TestHygiene(t *testing.T) {
	web := pod("shop", "web", map[string]string{"app": "web"})
	web.Spec.Containers[0].Ports = append(web.Spec.Containers[0].Ports, corev1ContainerPort("http", 80))
	svc := service("shop", "web", map[string]string{"app": "web"}, 8080, 80)
	base := []runtime.Object{web, svc}
	type tc struct {
		name    string
		extra   string // rule fields
		ns      string
		cluster []runtime.Object
		spec    string
		want    []string // "action code field" with action "A" standing for the rule's action
	}
	tests := []tc{
		{name: "clean", spec: "  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [{podSelector: {matchLabels: {access: 'true'}}}], ports: [{port: 80}]}]\n"},
		{name: "invalid: field path", spec: "  podSelector: {}\n  ingress: [{ports: [{port: 0}]}, {from: [{ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}}]}]\n",
			want: []string{"A invalid spec.ingress[0].ports[0].port", "A invalid spec.ingress[1].from[0].ipBlock.except[0]"}},
		{name: "ingress from 0.0.0.0/0", spec: "  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0}}], ports: [{port: 80}]}]\n",
			want: []string{"A ingress-from-anywhere spec.ingress[0].from[0].ipBlock.cidr"}},
		{name: "ingress from ::/0", spec: "  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [{ipBlock: {cidr: '::/0'}}], ports: [{port: 80}]}]\n",
			want: []string{"A ingress-from-anywhere spec.ingress[0].from[0].ipBlock.cidr"}},
		{name: "ingress from anywhere allowed by config: a lint warning", extra: "    denyIngressFromAnywhere: false\n",
			spec: "  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0}}], ports: [{port: 80}]}]\n",
			want: []string{"W ingress-from-anywhere spec.ingress[0].from[0].ipBlock.cidr"}},
		{name: "egress to 0.0.0.0/0 is fine", spec: "  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Egress]\n  egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0}}]}]\n"},
		{name: "allow-all ingress in a protected namespace", ns: "prot", spec: "  podSelector: {}\n  ingress: [{}]\n",
			want: []string{"A allow-all-ingress spec.ingress[0]"}},
		{name: "allow-all ingress by both families in a protected namespace", ns: "prot",
			spec: "  podSelector: {}\n  ingress: [{ports: [{port: 80}]}, {from: [{ipBlock: {cidr: 0.0.0.0/0}}, {ipBlock: {cidr: '::/0'}}]}]\n",
			want: []string{"A allow-all-ingress spec.ingress[1]", "A ingress-from-anywhere spec.ingress[1].from[0].ipBlock.cidr", "A ingress-from-anywhere spec.ingress[1].from[1].ipBlock.cidr"}},
		{name: "allow-all ingress where nothing is protected", spec: "  podSelector: {}\n  ingress: [{}]\n"},
		{name: "allow-all ingress allowed by config", ns: "prot", extra: "    denyAllowAllIngressInProtected: false\n", spec: "  podSelector: {}\n  ingress: [{}]\n"},
		{name: "allow-all voiding a default deny: one violation, not two", ns: "prot", cluster: []runtime.Object{policy(t, "prot", "deny", denyIngressSpec)},
			spec: "  podSelector: {}\n  ingress: [{}]\n", want: []string{"A allow-all-ingress spec.ingress[0]"}},
		{name: "selects no pods", spec: "  podSelector: {matchLabels: {app: nothing}}\n  ingress: [{ports: [{port: 80}]}]\n",
			want: []string{"W selects-no-pods spec.podSelector"}},
		{name: "service port instead of target port", spec: "  podSelector: {matchLabels: {app: web}}\n  ingress: [{ports: [{port: 8080}]}]\n",
			want: []string{"W service-port-not-target spec.ingress[0].ports[0].port"}},
		{name: "named port not exposed", spec: "  podSelector: {matchLabels: {app: web}}\n  ingress: [{ports: [{port: https}]}]\n",
			want: []string{"W named-port-not-exposed spec.ingress[0].ports[0].port"}},
		{name: "named egress port of pods elsewhere: unknowable, not reported", spec: "  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Egress]\n  egress: [{to: [{namespaceSelector: {}}], ports: [{port: dns, protocol: UDP}]}, {ports: [{port: 53, protocol: UDP}]}]\n"},
		{name: "lint warnings off", extra: "    lintWarnings: false\n", spec: "  podSelector: {matchLabels: {app: nothing}}\n  ingress: [{ports: [{port: 80}]}]\n"},
	}
	for _, action := range actions {
		for _, tt := range tests {
			t.Run(string(action)+"/"+tt.name, func(t *testing.T) {
				e := evaluator(t, hygieneConfig(action, tt.extra))
				ns := "shop"
				if tt.ns != "" {
					ns = tt.ns
				}
				objs := append([]runtime.Object{namespace("shop", nil), namespace("prot", map[string]string{"protected": "true"})}, base...)
				c := rules.NewMemoryCluster(append(objs, tt.cluster...)...)
				np := policy(t, ns, "p", tt.spec)
				r := validate(t, e, c, admissionv1.Create, np, nil)
				var want []string
				for _, w := range tt.want {
					a, rest, _ := strings.Cut(w, " ")
					switch {
					case a == "A":
						a = string(action)
					case action == config.DryRun:
						a = "dryrun"
					default:
						a = "warn"
					}
					want = append(want, a+" networkPolicyHygiene "+rest)
				}
				var got []string
				for _, v := range r.Violations {
					got = append(got, string(v.Action)+" "+v.Rule+" "+v.Code+" "+v.Field)
				}
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Errorf("violations:\n%s\nwant:\n%s\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), describe(r))
				}
				checkInvariants(t, r)
				for _, v := range r.Violations {
					if !strings.HasPrefix(v.Message, "NetworkPolicy "+ns+"/p") {
						t.Errorf("message does not name the policy: %q", v.Message)
					}
				}
				if action == config.DryRun && len(r.Warnings) > 0 {
					t.Errorf("dryrun warned: %q", r.Warnings)
				}
			})
		}
	}
}

func TestHygieneUpdate(t *testing.T) {
	e := evaluator(t, hygieneConfig(config.Deny, ""))
	c := rules.NewMemoryCluster(namespace("shop", nil))
	open := policy(t, "shop", "p", "  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0}}], ports: [{port: 80}]}]\n")
	closed := policy(t, "shop", "p", "  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}}], ports: [{port: 80}]}]\n")
	openMore := policy(t, "shop", "p", "  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0}}], ports: [{port: 80}, {port: 443}]}]\n")
	// Introducing it: denied.
	checkResult(t, validate(t, e, c, admissionv1.Update, open, closed), "deny networkPolicyHygiene ingress-from-anywhere")
	// Already there: tolerated, with a warning.
	r := validate(t, e, c, admissionv1.Update, openMore, open)
	checkResult(t, r, "warn networkPolicyHygiene ingress-from-anywhere")
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "tolerated") {
		t.Errorf("warnings %q", r.Warnings)
	}
	// Fixing it: fine.
	checkResult(t, validate(t, e, c, admissionv1.Update, closed, open))
	// DELETE is not this rule's business.
	checkResult(t, validate(t, e, c, admissionv1.Delete, nil, open))
}

// TestHygieneNamespaceLister: namespaceSelectors that match nothing are
// reported only when the cluster can list namespaces.
func TestHygieneNamespaceLister(t *testing.T) {
	e := evaluator(t, hygieneConfig(config.Deny, ""))
	objs := []runtime.Object{namespace("shop", nil), pod("shop", "web", map[string]string{"app": "web"})}
	np := policy(t, "shop", "p", "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {team: ghost}}}]}]\n")
	r := validate(t, e, rules.NewMemoryCluster(objs...), admissionv1.Create, np, nil)
	checkResult(t, r, "warn networkPolicyHygiene "+policylib.CodeNamespaceMatchesNothing)
	r = validate(t, e, onlyCluster{rules.NewMemoryCluster(objs...)}, admissionv1.Create, np, nil)
	checkResult(t, r)
}

// onlyCluster hides MemoryCluster's NamespaceLister.
type onlyCluster struct{ rules.Cluster }

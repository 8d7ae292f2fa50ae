package policylib_test

import (
	"slices"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/podwall/podwall/policylib"
)

func parsePolicy(t *testing.T, spec string) *networkingv1.NetworkPolicy {
	t.Helper()
	var np networkingv1.NetworkPolicy
	doc := "metadata: {name: p, namespace: default}\nspec:\n" + spec
	if err := yaml.UnmarshalStrict([]byte(doc), &np); err != nil {
		t.Fatal(err)
	}
	return &np
}

func TestAdmissionPredicates(t *testing.T) {
	tests := []struct {
		name                    string
		spec                    string
		denyIn, denyOut         bool
		allowAllIn, allowAllOut []int
		keys                    []string
	}{
		{"default deny ingress", "  podSelector: {}", true, false, nil, nil, nil},
		{"default deny both", "  podSelector: {}\n  policyTypes: [Ingress, Egress]", true, true, nil, nil, nil},
		{"egress: [] without policyTypes does not isolate egress", "  podSelector: {}\n  egress: []", true, false, nil, nil, nil},
		{"selecting some pods is no default deny", "  podSelector: {matchLabels: {app: web}}", false, false, nil, nil, []string{"app"}},
		{"allow-all ingress", "  podSelector: {}\n  ingress: [{}]", false, false, []int{0}, nil, nil},
		{"allow-all by both whole families", "  podSelector: {}\n  ingress: [{ports: [{port: 80}]}, {from: [{ipBlock: {cidr: 0.0.0.0/0}}, {ipBlock: {cidr: '::/0'}}]}]", false, false, []int{1}, nil, nil},
		{"0.0.0.0/0 alone is not every address", "  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0}}]}]", false, false, nil, nil, nil},
		{"egress allow-all ignored unless egress isolated", "  podSelector: {}\n  policyTypes: [Ingress]\n  egress: [{}]", true, false, nil, nil, nil},
		{"egress allow-all", "  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{}]", false, false, nil, []int{0}, nil},
		{"label keys from peers", "  podSelector: {matchLabels: {name: web}}\n  ingress: [{from: [{podSelector: {matchLabels: {access: 'true'}}}, {podSelector: {matchExpressions: [{key: tier, operator: Exists}]}}]}]", false, false, nil, nil, []string{"access", "name", "tier"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			np := parsePolicy(t, tt.spec)
			if got := policylib.IsDefaultDeny(np, policylib.Ingress); got != tt.denyIn {
				t.Errorf("IsDefaultDeny(ingress) = %v", got)
			}
			if got := policylib.IsDefaultDeny(np, policylib.Egress); got != tt.denyOut {
				t.Errorf("IsDefaultDeny(egress) = %v", got)
			}
			if got := policylib.AllowAllRules(np, policylib.Ingress); !slices.Equal(got, tt.allowAllIn) {
				t.Errorf("AllowAllRules(ingress) = %v", got)
			}
			if got := policylib.AllowAllRules(np, policylib.Egress); !slices.Equal(got, tt.allowAllOut) {
				t.Errorf("AllowAllRules(egress) = %v", got)
			}
			if got := policylib.SelectedLabelKeys(np); strings.Join(got, ",") != strings.Join(tt.keys, ",") {
				t.Errorf("SelectedLabelKeys = %v", got)
			}
		})
	}
}

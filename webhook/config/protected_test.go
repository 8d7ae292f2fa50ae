package config_test

import (
	"strings"
	"testing"

	"github.com/podwall/podwall/webhook/config"
)

func TestProtectedAccess(t *testing.T) {
	const head = "apiVersion: podwall.io/v1alpha1\nkind: AdmissionConfiguration\nrules:\n  protectedAccess:\n"
	c, err := config.Parse([]byte(head+"    protectedSelector: {matchLabels: {name: networkpolicy-demo}}\n"), "ok.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := c.Rules.ProtectedAccess
	if r.Engine != config.EngineRego || r.RequiredPeerLabels["access"] != "true" || r.EnforcementAction != config.Deny {
		t.Errorf("defaults not applied: %+v", r)
	}
	for _, tt := range []struct{ body, want string }{
		{"    enforcementAction: deny\n", "rules.protectedAccess.protectedSelector: Required"},
		{"    engine: go\n    protectedSelector: {}\n", "rules.protectedAccess.engine: Unsupported value"},
		{"    protectedSelector: {matchLabels: {name: networkpolicy-demo}}\n    requiredPeerLabels: {'bad key!': x}\n", "rules.protectedAccess.requiredPeerLabels"},
	} {
		_, err := config.Parse([]byte(head+tt.body), "bad.yaml")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want an error containing %q", tt.body, err, tt.want)
		}
	}
}

package config_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/podwall/podwall/policylib"
	"github.com/podwall/podwall/webhook/config"
)

func TestLoadExamples(t *testing.T) {
	c, err := config.Load("testdata/podwall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rl := c.Rules.RequiredLabels
	if rl == nil || rl.EnforcementAction != config.Deny || rl.Engine != config.EngineGo || len(rl.Labels) != 2 {
		t.Fatalf("requiredLabels = %+v", rl)
	}
	if rl.Labels[0].Key != "access" || *rl.Labels[0].Default != "false" || rl.Labels[1].Default != nil || !rl.Labels[1].Allows("anything") {
		t.Errorf("labels = %+v", rl.Labels)
	}
	if !slices.Equal(rl.Match.ExcludedNamespaces, []string{"monitoring"}) || rl.Match.ObjectSelector == nil {
		t.Errorf("match = %+v", rl.Match)
	}
	dd := c.Rules.DefaultDeny
	if dd == nil || len(dd.PolicyTypes) != 2 || dd.PolicyName != "default-deny" || dd.Generate {
		t.Errorf("defaultDeny = %+v", dd)
	}
	h := c.Rules.NetworkPolicyHygiene
	if h == nil || !h.DeniesIngressFromAnywhere() || !h.DeniesAllowAllIngressInProtected() || !h.WantsLintWarnings() {
		t.Errorf("hygiene = %+v", h)
	}

	seed, err := config.Load("testdata/seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seed.ExemptNamespaces, []string{"kube-system", "podwall-system"}) {
		t.Errorf("default exemptNamespaces = %v", seed.ExemptNamespaces)
	}
	if got := seed.Rules.RequiredLabels.Match.Kinds; !slices.Equal(got, config.PodKinds()) {
		t.Errorf("default requiredLabels kinds = %v", got)
	}
	if got := seed.Rules.DefaultDeny.Match.Kinds; !slices.Equal(got, append(config.PodKinds(), "NetworkPolicy")) {
		t.Errorf("default defaultDeny kinds = %v", got)
	}
	if got := seed.Rules.DefaultDeny.PolicyTypes; !slices.Equal(got, []networkingv1.PolicyType{"Ingress"}) {
		t.Errorf("default policyTypes = %v", got)
	}
	if got := seed.Rules.NetworkPolicyHygiene; got.EnforcementAction != config.Deny || *got.LintWarnings != true || !slices.Equal(got.Match.Kinds, []string{"NetworkPolicy"}) {
		t.Errorf("hygiene defaults = %+v", got)
	}
}

func TestDefaults(t *testing.T) {
	c, err := config.Parse([]byte("apiVersion: podwall.io/v1alpha1\nkind: AdmissionConfiguration\nexemptNamespaces: []\nrules: {}\n"), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.ExemptNamespaces == nil || len(c.ExemptNamespaces) != 0 {
		t.Errorf("explicit [] exemptNamespaces became %v", c.ExemptNamespaces)
	}
	if c.Rules != (config.Rules{}) {
		t.Errorf("rules = %+v, want all off", c.Rules)
	}
	// Default is idempotent and Validate accepts an undefaulted config.
	raw := &config.AdmissionConfiguration{Rules: config.Rules{DefaultDeny: &config.DefaultDenyRule{}}}
	raw.APIVersion, raw.Kind = config.APIVersion, config.Kind
	if err := raw.Validate(); err != nil {
		t.Errorf("undefaulted: %v", err)
	}
	raw.Default()
	once := raw.DeepCopy()
	raw.Default()
	if !reflect.DeepEqual(once, raw) {
		t.Errorf("Default is not idempotent")
	}
}

func TestJSON(t *testing.T) {
	c, err := config.Parse([]byte(`{"apiVersion":"podwall.io/v1alpha1","kind":"AdmissionConfiguration","rules":{"networkPolicyHygiene":{"enforcementAction":"warn","lintWarnings":false}}}`), "c.json")
	if err != nil {
		t.Fatal(err)
	}
	if h := c.Rules.NetworkPolicyHygiene; h.EnforcementAction != config.Warn || h.WantsLintWarnings() || !h.DeniesIngressFromAnywhere() {
		t.Errorf("hygiene = %+v", h)
	}
}

// TestValidateEveryProblem: one configuration with a problem in each field
// reports all of them at once, each with its field path.
func TestValidateEveryProblem(t *testing.T) {
	doc := `apiVersion: podwall.io/v1
kind: AdmissionConfig
exemptNamespaces: [kube-system, kube-system, Bad_NS]
rules:
  requiredLabels:
    enforcementAction: block
    engine: wasm
    match:
      kinds: [Pod, Service, NetworkPolicy, Pod]
      namespaces: ["-x"]
      namespaceSelector:
        matchExpressions: [{key: team, operator: In}]
      objectSelector:
        matchLabels: {"bad key!": x}
    labels:
    - key: access
      allowedValues: ["true", "false", "true", "not valid!"]
      default: "maybe"
    - key: access
    - key: "-nope"
      default: "bad value!"
  defaultDeny:
    enforcementAction: Deny
    policyTypes: [Ingress, ingress, Ingress]
    policyName: Default_Deny
    match:
      kinds: []
  networkPolicyHygiene:
    engine: Rego
    match:
      kinds: [Pod]
      excludedNamespaces: [a, a]
`
	_, err := config.Parse([]byte(doc), "bad.yaml")
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("Parse error %T %v, want *config.Error", err, err)
	}
	if ce.Source != "bad.yaml" || !strings.HasPrefix(err.Error(), "bad.yaml: ") || strings.Contains(err.Error(), "\n") {
		t.Errorf("message is not one line naming the file: %q", err)
	}
	want := []string{
		"apiVersion", "kind",
		"exemptNamespaces[1]", "exemptNamespaces[2]",
		"rules.requiredLabels.enforcementAction", "rules.requiredLabels.engine",
		"rules.requiredLabels.match.kinds[1]", "rules.requiredLabels.match.kinds[2]", "rules.requiredLabels.match.kinds[3]",
		"rules.requiredLabels.match.namespaces[0]",
		"rules.requiredLabels.match.namespaceSelector.matchExpressions[0].values",
		"rules.requiredLabels.match.objectSelector.matchLabels",
		"rules.requiredLabels.labels[0].allowedValues[2]", "rules.requiredLabels.labels[0].allowedValues[3]",
		"rules.requiredLabels.labels[0].default",
		"rules.requiredLabels.labels[1].key",
		"rules.requiredLabels.labels[2].key", "rules.requiredLabels.labels[2].default",
		"rules.defaultDeny.enforcementAction",
		"rules.defaultDeny.policyTypes[1]", "rules.defaultDeny.policyTypes[2]",
		"rules.defaultDeny.policyName",
		"rules.defaultDeny.match.kinds",
		"rules.networkPolicyHygiene.engine",
		"rules.networkPolicyHygiene.match.kinds[0]",
		"rules.networkPolicyHygiene.match.excludedNamespaces[1]",
	}
	var got []string
	for _, e := range ce.Errs {
		var fe *field.Error
		if !errors.As(e, &fe) {
			t.Errorf("problem %v is not a *field.Error", e)
			continue
		}
		got = append(got, fe.Field)
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("no problem reported for %s", w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			t.Errorf("unexpected problem at %s", g)
		}
	}
	for _, w := range []string{`"Service"`, `does not check NetworkPolicy objects`, `supported values: "deny", "warn", "dryrun"`, `Duplicate value: "access"`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("message lacks %q: %s", w, err)
		}
	}
}

func TestStrictDecoding(t *testing.T) {
	head := "apiVersion: podwall.io/v1alpha1\nkind: AdmissionConfiguration\n"
	tests := []struct {
		name, doc, want string
	}{
		{"unknown top-level field", head + "exemptNamespace: [a]\n", `unknown field "exemptNamespace"`},
		{"unknown rule", head + "rules:\n  requiredLabel: {}\n", `unknown field "rules.requiredLabel"`},
		{"unknown field in a label", head + "rules:\n  requiredLabels:\n    labels: [{key: a, defualt: x}]\n", `unknown field "rules.requiredLabels.labels[0].defualt"`},
		{"duplicate key", head + "rules: {}\nrules: {}\n", `"rules" already set`},
		{"wrong type", head + "rules:\n  defaultDeny:\n    generate: yes-please\n", "cannot unmarshal"},
		{"malformed", head + "rules: [\n", "yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tt.doc), "c.yaml")
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "c.yaml: ") {
				t.Errorf("err = %v, want it to name c.yaml and contain %q", err, tt.want)
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := config.Load("testdata/nope.yaml")
	if err == nil || err.Error() != "testdata/nope.yaml: no such file or directory" {
		t.Errorf("err = %v", err)
	}
}

func TestDefaultDenyPolicy(t *testing.T) {
	r := &config.DefaultDenyRule{PolicyTypes: []networkingv1.PolicyType{"Ingress", "Egress"}, PolicyName: "deny-all"}
	np := r.Policy("team-a")
	if np.Name != "deny-all" || np.Namespace != "team-a" || np.APIVersion != "networking.k8s.io/v1" || np.Kind != "NetworkPolicy" {
		t.Errorf("policy meta = %+v %+v", np.TypeMeta, np.ObjectMeta)
	}
	if errs := policylib.ValidatePolicy(np); len(errs) > 0 {
		t.Errorf("generated policy is invalid: %v", errs)
	}
	for _, dir := range []policylib.Direction{policylib.Ingress, policylib.Egress} {
		if !policylib.IsDefaultDeny(np, dir) {
			t.Errorf("generated policy does not deny %s by default", dir)
		}
	}
	np.Spec.PolicyTypes[0] = "Changed"
	if r.PolicyTypes[0] != "Ingress" {
		t.Error("Policy shares policyTypes with the rule")
	}
	// Zero rule: the defaults.
	np = (&config.DefaultDenyRule{}).Policy("x")
	if np.Name != config.DefaultPolicyName || !policylib.IsDefaultDeny(np, policylib.Ingress) || policylib.IsDefaultDeny(np, policylib.Egress) {
		t.Errorf("zero rule policy = %+v", np)
	}
	out, err := yaml.Marshal(np)
	if err != nil || !strings.Contains(string(out), "podSelector: {}") {
		t.Errorf("YAML: %s %v", out, err)
	}
}

func TestDeepCopy(t *testing.T) {
	c, err := config.Load("testdata/podwall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cp := c.DeepCopy()
	if !reflect.DeepEqual(c, cp) {
		t.Fatal("copy differs")
	}
	cp.ExemptNamespaces[0] = "x"
	cp.Rules.RequiredLabels.Labels[0].AllowedValues[0] = "x"
	*cp.Rules.RequiredLabels.Labels[0].Default = "x"
	cp.Rules.RequiredLabels.Match.Kinds[0] = "x"
	cp.Rules.DefaultDeny.Match.NamespaceSelector.MatchLabels["x"] = "y"
	cp.Rules.DefaultDeny.PolicyTypes[0] = "x"
	*cp.Rules.NetworkPolicyHygiene.LintWarnings = false
	again, _ := config.Load("testdata/podwall.yaml")
	if !reflect.DeepEqual(c, again) {
		t.Error("changing the copy changed the original")
	}
	if (*config.AdmissionConfiguration)(nil).DeepCopy() != nil {
		t.Error("nil copy")
	}
}

func ExampleParse() {
	c, err := config.Parse([]byte(`
apiVersion: podwall.io/v1alpha1
kind: AdmissionConfiguration
rules:
  defaultDeny:
    match:
      namespaceSelector: {matchLabels: {podwall.io/protected: "true"}}
`), "podwall.yaml")
	if err != nil {
		panic(err)
	}
	out, _ := yaml.Marshal(c.Rules.DefaultDeny.Policy("shop"))
	fmt.Print(string(out))
	_, err = config.Parse([]byte("apiVersion: podwall.io/v1alpha1\nkind: AdmissionConfiguration\nrules: {defaultDeny: {enforcementAction: block, policyTypes: [Sideways]}}\n"), "bad.yaml")
	fmt.Println(err)
	// Output:
	// apiVersion: networking.k8s.io/v1
	// kind: NetworkPolicy
	// metadata:
	//   name: default-deny
	//   namespace: shop
	// spec:
	//   podSelector: {}
	//   policyTypes:
	//   - Ingress
	// bad.yaml: rules.defaultDeny.enforcementAction: Unsupported value: "block": supported values: "deny", "warn", "dryrun"; rules.defaultDeny.policyTypes[0]: Unsupported value: "Sideways": supported values: "Ingress", "Egress"
}

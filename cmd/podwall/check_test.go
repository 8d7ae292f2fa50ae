package main

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	seedConfig  = "../../webhook/config/testdata/seed.yaml"
	checkData   = "testdata/check"
	checkShop   = checkData + "/shop"
	defaultDeny = checkData + "/default-deny.yaml"
)

type checkDoc struct {
	Findings []checkFinding `json:"findings"`
	Summary  map[string]int `json:"summary"`
}

func checkJSON(t *testing.T, wantCode int, args ...string) checkDoc {
	t.Helper()
	code, out, errOut := podwall(t, "", append(append([]string{"check"}, args...), "-o", "json")...)
	if code != wantCode || errOut != "" {
		t.Fatalf("check %s: exit %d, stderr %q; want exit %d", strings.Join(args, " "), code, errOut, wantCode)
	}
	var doc checkDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	return doc
}

// summarize renders findings as "action rule object".
func summarize(fs []checkFinding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Action+" "+f.Rule+" "+f.Object)
	}
	return out
}

func TestCheckSeed(t *testing.T) {
	// The seed cluster with the seed configuration: every pod must say
	// whether it has access; busybox (like the httpd pods) does not.
	for _, format := range []string{"table", "json"} {
		t.Run(format, func(t *testing.T) {
			code, out, errOut := podwall(t, "", "check", "-f", seed+"/cluster", "--config", seedConfig, "-o", format)
			if code != 1 || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			golden(t, "check/seed."+format+".golden", out)
		})
	}
	doc := checkJSON(t, 1, "-f", seed+"/cluster", "-f", seed+"/original/networkpolicy.yaml", "--config", seedConfig)
	want := []string{
		"deny requiredLabels Pod default/httpd-1",
		"deny requiredLabels Pod default/httpd-2",
		"deny requiredLabels Pod default/httpd-3",
		"deny requiredLabels Pod default/busybox",
	}
	if got := summarize(doc.Findings); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	busybox := doc.Findings[3]
	if busybox.Code != "missing-label" || busybox.Field != "metadata.labels[access]" || busybox.Source != seed+"/cluster/workloads.yaml#4" ||
		busybox.Kind != "Pod" || busybox.Namespace != "default" || busybox.Name != "busybox" ||
		!strings.Contains(busybox.Message, "NetworkPolicies in namespace default that select on it: access-httpd") {
		t.Errorf("busybox finding %+v", busybox)
	}
	if doc.Summary["objects"] != 6 || doc.Summary["deny"] != 4 {
		t.Errorf("summary %v", doc.Summary)
	}
	// With --mutate, access=false is set as the webhook would, and
	// everything is admitted.
	doc = checkJSON(t, 0, "-f", seed+"/cluster", "-f", seed+"/original/networkpolicy.yaml", "--config", seedConfig, "--mutate")
	if len(doc.Findings) != 4 || doc.Summary["mutate"] != 4 || !strings.Contains(doc.Findings[3].Message, `access="false"`) {
		t.Errorf("--mutate: %+v", doc)
	}
	// The original Deployment: its template lacks access too.
	doc = checkJSON(t, 1, "-f", seed+"/original/httpd-demo.yaml", "-f", seed+"/original/networkpolicy-ipblock.yaml", "--config", seedConfig)
	if got := summarize(doc.Findings); len(got) != 1 || got[0] != "deny requiredLabels Deployment default/httpd" || doc.Findings[0].Field != "spec.template.metadata.labels[access]" {
		t.Errorf("httpd-demo: %v", got)
	}
}

func TestCheckProtectedNamespace(t *testing.T) {
	doc := checkJSON(t, 1, "-f", checkShop, "--config", seedConfig)
	want := []string{
		"deny networkPolicyHygiene NetworkPolicy shop/web",
		"deny defaultDeny Deployment shop/web",
		"deny defaultDeny CronJob shop/report", // an object's findings by rule, whichever engine
		"deny requiredLabels CronJob shop/report",
		"deny defaultDeny Pod shop/client",
	}
	if got := summarize(doc.Findings); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if f := doc.Findings[0]; f.Code != "ingress-from-anywhere" || f.Field != "spec.ingress[1].from[0].ipBlock.cidr" {
		t.Errorf("hygiene finding %+v", f)
	}
	if f := doc.Findings[1]; !strings.Contains(f.Message, "kind: NetworkPolicy\nmetadata:\n  name: default-deny\n  namespace: shop\n") {
		t.Errorf("defaultDeny finding lacks the policy to apply:\n%s", f.Message)
	}
	// A default deny in the inputs counts.
	doc = checkJSON(t, 1, "-f", checkShop, "-f", defaultDeny, "--config", seedConfig)
	want = []string{
		"deny networkPolicyHygiene NetworkPolicy shop/web",
		"deny requiredLabels CronJob shop/report",
	}
	if got := summarize(doc.Findings); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("with the default deny:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Warn mode: the same findings, exit 0.
	doc = checkJSON(t, 0, "-f", checkShop, "--config", checkData+"/warn-config.yaml")
	if len(doc.Findings) != 5 || doc.Summary["warn"] != 5 {
		t.Errorf("warn mode: %+v", doc.Summary)
	}
	// The table names rule, action, object and source, on one line each.
	code, out, _ := podwall(t, "", "check", "-f", checkShop, "--config", seedConfig)
	if code != 1 {
		t.Errorf("table: exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "RULE") {
		t.Fatalf("table:\n%s", out)
	}
	for _, w := range []string{"defaultDeny", "deny", "Pod shop/client", checkShop + "/workloads.yaml#3", "apply NetworkPolicy shop/default-deny first"} {
		if !strings.Contains(lines[5], w) {
			t.Errorf("table line %q lacks %q", lines[5], w)
		}
	}
	// Nothing to say.
	code, out, _ = podwall(t, "", "check", "-f", defaultDeny, "--config", seedConfig)
	if code != 0 || out != "No findings in 1 objects.\n" {
		t.Errorf("clean: exit %d, %q", code, out)
	}
}

// TestCheckRego checks that the rules on the rego engine find what the Go
// rules find, object by object, for the seed (with and without --mutate)
// and the shop cluster.
func TestCheckRego(t *testing.T) {
	for _, c := range []struct {
		code int
		args []string
	}{
		{1, []string{"-f", seed + "/cluster", "-f", seed + "/original/networkpolicy.yaml"}},
		{0, []string{"-f", seed + "/cluster", "--mutate"}},
		{1, []string{"-f", checkShop}},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			goDoc := checkJSON(t, c.code, append(c.args, "--config", seedConfig)...)
			regoDoc := checkJSON(t, c.code, append(c.args, "--config", checkData+"/seed-rego.yaml")...)
			// The rules of one object may report in another order.
			g, r := summarize(goDoc.Findings), summarize(regoDoc.Findings)
			slices.Sort(g)
			slices.Sort(r)
			if len(g) == 0 || !slices.Equal(g, r) {
				t.Errorf("Go rules found:\n%s\nRego rules found:\n%s", strings.Join(g, "\n"), strings.Join(r, "\n"))
			}
			if !maps.Equal(goDoc.Summary, regoDoc.Summary) {
				t.Errorf("summary: Go %v, Rego %v", goDoc.Summary, regoDoc.Summary)
			}
		})
	}
}

func TestCheckBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"bad config: every problem, one line, file and field", []string{"-f", checkShop, "--config", checkData + "/bad-config.yaml"},
			[]string{"podwall: testdata/check/bad-config.yaml: ",
				`rules.requiredLabels.enforcementAction: Unsupported value: "block"`,
				`; rules.requiredLabels.labels[0].default: Unsupported value: "maybe"`,
				`; rules.defaultDeny.match.namespaceSelector.matchExpressions[0].operator: Invalid value: "Within"`,
				`; rules.defaultDeny.policyTypes[0]: Unsupported value: "Sideways"`}},
		{"config not found", []string{"-f", checkShop, "--config", checkData + "/nope.yaml"}, []string{"podwall: testdata/check/nope.yaml: no such file or directory"}},
		{"config is not a configuration", []string{"-f", checkShop, "--config", defaultDeny}, []string{"podwall: testdata/check/default-deny.yaml: ", `unknown field "metadata"`, `unknown field "spec"`}},
		{"bundle not found", []string{"-f", checkShop, "--config", checkData + "/rego-config.yaml", "--bundle", checkData + "/nope.tar.gz"}, []string{"podwall: --bundle: ", "nope.tar.gz"}},
		{"bundle not found, no rule on rego", []string{"-f", checkShop, "--config", seedConfig, "--bundle", checkData + "/nope.tar.gz"}, []string{"podwall: --bundle: ", "nope.tar.gz"}},
		{"no config", []string{"-f", checkShop}, []string{"podwall: --config: required"}},
		{"no -f", []string{"--config", seedConfig}, []string{"podwall: -f/--filename: required"}},
		{"bad manifest", []string{"-f", "testdata/bad/typo.yaml", "--config", seedConfig}, []string{"podwall: testdata/bad/typo.yaml#1: NetworkPolicy default/typo: "}},
		{"unknown output", []string{"-f", checkShop, "--config", seedConfig, "-o", "wide"}, []string{`podwall: -o/--output "wide": unknown format`}},
		{"stray argument", []string{"-f", checkShop, "--config", seedConfig, "extra"}, []string{`podwall: unexpected argument "extra"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := podwall(t, "", append([]string{"check"}, tt.args...)...)
			if code != 2 || out != "" {
				t.Errorf("exit %d, stdout %q; want 2 and nothing", code, out)
			}
			if strings.Count(errOut, "\n") != 1 || !strings.HasSuffix(errOut, "\n") {
				t.Errorf("stderr is not one line: %q", errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q lacks %q", errOut, w)
				}
			}
		})
	}
}

func TestCheckYAMLMatchesJSON(t *testing.T) {
	args := []string{"check", "-f", checkShop, "--config", seedConfig}
	_, js, _ := podwall(t, "", append(args, "-o", "json")...)
	_, ym, _ := podwall(t, "", append(args, "-o", "yaml")...)
	var a, b checkDoc
	if err := json.Unmarshal([]byte(js), &a); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(ym), &b); err != nil {
		t.Fatal(err)
	}
	if len(a.Findings) == 0 || len(a.Findings) != len(b.Findings) || a.Findings[1] != b.Findings[1] {
		t.Errorf("yaml and json differ:\n%s\n%s", js, ym)
	}
}

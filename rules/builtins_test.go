package rules

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/podwall/podwall/manifest"
)

const seedDir = "../examples/seed"

// seedSnapshot is the seed scenario as a podwall.decide snapshot, with the
// given policy files from examples/seed/original.
func seedSnapshot(t testing.TB, policies ...string) map[string]any {
	t.Helper()
	paths := []string{seedDir + "/cluster"}
	for _, p := range policies {
		paths = append(paths, seedDir+"/original/"+p)
	}
	set, err := manifest.Load(paths...)
	if err != nil {
		t.Fatal(err)
	}
	return toJSON(t, map[string]any{
		"namespaces": set.Namespaces,
		"nodes":      set.Nodes,
		"pods":       set.Pods,
		"services":   set.Services,
		"policies":   set.NetworkPolicies,
	}).(map[string]any)
}

func toJSON(t testing.TB, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// evalBuiltin evaluates "x := QUERY" with the podwall built-ins added to
// this query only, built-in errors strict.
func evalBuiltin(t testing.TB, query string, input any) (any, error) {
	t.Helper()
	opts := append([]func(*rego.Rego){rego.Query("x := " + query), rego.StrictBuiltinErrors(true)}, Functions()...)
	if input != nil {
		opts = append(opts, rego.Input(input))
	}
	rs, err := rego.New(opts...).Eval(context.Background())
	if err != nil {
		return nil, err
	}
	if len(rs) != 1 {
		t.Fatalf("%s: %d results, want 1", query, len(rs))
	}
	return rs[0].Bindings["x"], nil
}

func mustEval(t testing.TB, query string, input any) any {
	t.Helper()
	v, err := evalBuiltin(t, query, input)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return v
}

// wantBuiltinError checks that the query fails with a topdown built-in
// error (not a panic, not undefined) whose message says what is wrong.
func wantBuiltinError(t *testing.T, query string, input any, name string, parts ...string) {
	t.Helper()
	_, err := evalBuiltin(t, query, input)
	if err == nil {
		t.Fatalf("%s: no error, want one naming %q", query, parts)
	}
	var te *topdown.Error
	if !errors.As(err, &te) {
		t.Fatalf("%s: error %T %v, want a *topdown.Error", query, err, err)
	}
	if te.Code != topdown.BuiltinErr {
		t.Errorf("%s: code %q, want %q", query, te.Code, topdown.BuiltinErr)
	}
	if !strings.HasPrefix(te.Message, name+": ") {
		t.Errorf("%s: message %q does not start with %q", query, te.Message, name+": ")
	}
	for _, p := range parts {
		if !strings.Contains(te.Message, p) {
			t.Errorf("%s: message %q lacks %q", query, te.Message, p)
		}
	}
}

func TestSelectorMatches(t *testing.T) {
	tests := []struct {
		sel    string
		labels string
	}{
		{`{}`, `{}`},
		{`{}`, `{"a": "b"}`},
		{`{"matchLabels": {"access": "true"}}`, `{"access": "true", "run": "busybox"}`},
		{`{"matchLabels": {"access": "true"}}`, `{"run": "busybox"}`},
		{`{"matchLabels": {"access": "true"}}`, `{"access": "false"}`},
		{`{"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}`, `{}`},
		{`{"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}`, `{"env": "prod"}`},
		{`{"matchExpressions": [{"key": "env", "operator": "DoesNotExist"}]}`, `{}`},
		{`{"matchExpressions": [{"key": "env", "operator": "DoesNotExist"}]}`, `{"env": ""}`},
		{`{"matchExpressions": [{"key": "env", "operator": "Exists"}]}`, `{"env": ""}`},
		{`{"matchExpressions": [{"key": "env", "operator": "In", "values": ["a", "b"]}]}`, `{"env": "b"}`},
		{`{"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "In", "values": ["2"]}]}`, `{"a": "1"}`},
		{`{"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "In", "values": ["2"]}]}`, `{"a": "1", "b": "2"}`},
	}
	for _, tc := range tests {
		// apimachinery is the oracle.
		var ls metav1.LabelSelector
		var lbls map[string]string
		if err := json.Unmarshal([]byte(tc.sel), &ls); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(tc.labels), &lbls); err != nil {
			t.Fatal(err)
		}
		oracle, err := metav1.LabelSelectorAsSelector(&ls)
		if err != nil {
			t.Fatal(err)
		}
		want := oracle.Matches(labels.Set(lbls))
		got := mustEval(t, "podwall.selector_matches("+tc.sel+", "+tc.labels+")", nil)
		if got != want {
			t.Errorf("selector_matches(%s, %s) = %v, want %v", tc.sel, tc.labels, got, want)
		}
	}
}

func TestSelectorMatchesErrors(t *testing.T) {
	const name = "podwall.selector_matches"
	wantBuiltinError(t, `podwall.selector_matches({"matchExpressions": [{"key": "a", "operator": "Foo"}]}, {})`, nil, name,
		"invalid label selector", "Foo")
	wantBuiltinError(t, `podwall.selector_matches({"matchExpressions": [{"key": "a", "operator": "In"}]}, {})`, nil, name,
		"invalid label selector", "values")
	wantBuiltinError(t, `podwall.selector_matches({"matchLabels": {"bad key!": "x"}}, {})`, nil, name, "invalid label selector")
	wantBuiltinError(t, `podwall.selector_matches({"matchLabel": {"a": "b"}}, {})`, nil, name, "not a label selector", "matchLabel")
	wantBuiltinError(t, `podwall.selector_matches({}, input.labels)`, map[string]any{"labels": map[string]any{"a": 1}}, name,
		"argument 2 (labels)", `"a"`, "number")
	wantBuiltinError(t, `podwall.selector_matches(input.sel, {})`, map[string]any{"sel": "app=web"}, name,
		"argument 1 (selector): want an object, got string")
}

func TestIPBlockContains(t *testing.T) {
	block := `{"cidr": "192.168.2.0/24", "except": ["192.168.2.128/25"]}`
	for addr, want := range map[string]bool{
		"192.168.2.1":        true,
		"192.168.2.127":      true,
		"192.168.2.128":      false,
		"192.168.3.1":        false,
		"::ffff:192.168.2.1": true, // IPv4-mapped addresses are IPv4
		"2001:db8::1":        false,
	} {
		if got := mustEval(t, "podwall.ipblock_contains("+block+`, "`+addr+`")`, nil); got != want {
			t.Errorf("ipblock_contains(%s, %s) = %v, want %v", block, addr, got, want)
		}
	}
	if got := mustEval(t, `podwall.ipblock_contains({"cidr": "2001:db8::/32"}, "2001:db8:1::5")`, nil); got != true {
		t.Errorf("IPv6: got %v", got)
	}
	const name = "podwall.ipblock_contains"
	wantBuiltinError(t, `podwall.ipblock_contains({"cidr": "192.168.2.0/33"}, "192.168.2.1")`, nil, name, "192.168.2.0/33")
	wantBuiltinError(t, `podwall.ipblock_contains({"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}, "10.0.0.1")`, nil, name, "11.0.0.0/16")
	wantBuiltinError(t, `podwall.ipblock_contains({"cidr": "10.0.0.0/8"}, "10.0.0.300")`, nil, name, "argument 2 (addr)", "10.0.0.300")
	wantBuiltinError(t, `podwall.ipblock_contains({"cidrs": "10.0.0.0/8"}, "10.0.0.1")`, nil, name, "not an ipBlock", "cidrs")
}

const httpdPod = `{"metadata": {"name": "httpd-1", "namespace": "default", "labels": {"name": "networkpolicy-demo"}},
	"spec": {"containers": [{"name": "httpd", "ports": [{"containerPort": 80}, {"name": "metrics", "containerPort": 9090}]}]}}`

func TestPortsAllow(t *testing.T) {
	stage1 := `{"metadata": {"name": "access-httpd", "namespace": "default"}, "spec": {
		"podSelector": {"matchLabels": {"name": "networkpolicy-demo"}},
		"ingress": [{"from": [{"podSelector": {"matchLabels": {"access": "true"}}}], "ports": [{"protocol": "TCP", "port": 80}]}]}}`
	named := `{"spec": {"podSelector": {}, "ingress": [{"ports": [{"port": "metrics"}]}]}}`
	ranged := `{"spec": {"podSelector": {}, "ingress": [{"ports": [{"protocol": "UDP", "port": 1000, "endPort": 2000}]}]}}`
	anyPort := `{"spec": {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}}`
	egress := `{"spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "metrics"}]}]}}`
	tests := []struct {
		policy, proto, dir string
		port               int
		want               bool
	}{
		{stage1, "TCP", "ingress", 80, true},
		{stage1, "tcp", "Ingress", 80, true},
		{stage1, "TCP", "ingress", 81, false},
		{stage1, "UDP", "ingress", 80, false},
		{stage1, "ICMP", "ingress", 0, false}, // a rule with ports never allows ICMP
		{stage1, "TCP", "egress", 80, false},  // the policy does not isolate egress
		{named, "TCP", "ingress", 9090, true}, // resolved on the pod
		{named, "TCP", "ingress", 80, false},
		{ranged, "UDP", "ingress", 1500, true},
		{ranged, "UDP", "ingress", 2001, false},
		{anyPort, "SCTP", "ingress", 7, true},
		{anyPort, "ICMP", "ingress", 0, true}, // a rule without ports allows ICMP
		{egress, "TCP", "egress", 9090, true},
		{egress, "TCP", "egress", 80, false},
		{egress, "TCP", "ingress", 9090, false},
	}
	for _, tc := range tests {
		q := "podwall.ports_allow(" + tc.policy + ", " + httpdPod + ", " + itoa(tc.port) + `, "` + tc.proto + `", "` + tc.dir + `")`
		if got := mustEval(t, q, nil); got != tc.want {
			t.Errorf("ports_allow(%.60s..., %s/%d %s) = %v, want %v", tc.policy, tc.proto, tc.port, tc.dir, got, tc.want)
		}
	}
	const name = "podwall.ports_allow"
	wantBuiltinError(t, `podwall.ports_allow(`+anyPort+", "+httpdPod+`, 80, "TCP", "sideways")`, nil, name, "argument 5 (direction)", "sideways")
	wantBuiltinError(t, `podwall.ports_allow(`+anyPort+", "+httpdPod+`, 80, "GRE", "ingress")`, nil, name, "argument 4 (protocol)", "GRE")
	wantBuiltinError(t, `podwall.ports_allow(`+anyPort+", "+httpdPod+`, 70000, "TCP", "ingress")`, nil, name, "argument 3 (port)", "70000")
	wantBuiltinError(t, `podwall.ports_allow(`+anyPort+", "+httpdPod+`, 80.5, "TCP", "ingress")`, nil, name, "argument 3 (port)")
	wantBuiltinError(t, `podwall.ports_allow({"spec": {"podSelector": {}, "ingress": [{"ports": [{"protocol": "ICMP"}]}]}}, `+httpdPod+`, 80, "TCP", "ingress")`,
		nil, name, "argument 1 (policy)", "spec.ingress[0].ports[0].protocol")
	wantBuiltinError(t, `podwall.ports_allow(`+anyPort+`, {"spec": {"containers": "x"}}, 80, "TCP", "ingress")`, nil, name, "argument 2 (pod): not a Pod")
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

func TestIsDefaultDenyAndAllowAllRules(t *testing.T) {
	deny := `{"metadata": {"name": "d", "namespace": "n"}, "spec": {"podSelector": {}}}`
	both := `{"spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}`
	selective := `{"spec": {"podSelector": {"matchLabels": {"a": "b"}}}}`
	for q, want := range map[string]bool{
		`podwall.is_default_deny(` + deny + `, "ingress")`:      true,
		`podwall.is_default_deny(` + deny + `, "egress")`:       false,
		`podwall.is_default_deny(` + both + `, "Egress")`:       true,
		`podwall.is_default_deny(` + selective + `, "ingress")`: false,
	} {
		if got := mustEval(t, q, nil); got != want {
			t.Errorf("%s = %v, want %v", q, got, want)
		}
	}
	open := `{"spec": {"podSelector": {}, "ingress": [
		{},
		{"from": [{"podSelector": {}}]},
		{"ports": [{"port": 80}]},
		{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}]},
		{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}
	]}}`
	got := mustEval(t, `podwall.allow_all_rules(`+open+`, "ingress")`, nil)
	if want := []any{json.Number("0"), json.Number("3")}; !reflect.DeepEqual(got, want) {
		t.Errorf("allow_all_rules = %v, want %v", got, want)
	}
	if got := mustEval(t, `podwall.allow_all_rules(`+open+`, "egress")`, nil); !reflect.DeepEqual(got, []any{}) {
		t.Errorf("allow_all_rules egress = %v, want []", got)
	}
	wantBuiltinError(t, `podwall.is_default_deny({"spec": {"podSelector": {}, "policyTypes": ["Sideways"]}}, "ingress")`, nil,
		"podwall.is_default_deny", "spec.policyTypes[0]", "Sideways")
	wantBuiltinError(t, `podwall.allow_all_rules({"spec": {"podSelector": {}}}, "up")`, nil, "podwall.allow_all_rules", "argument 2 (direction)")
	wantBuiltinError(t, `podwall.allow_all_rules(input, "ingress")`, []any{1}, "podwall.allow_all_rules", "argument 1 (policy): want an object, got array")
}

func TestDecide(t *testing.T) {
	in := map[string]any{
		"stage0": seedSnapshot(t),
		"stage1": seedSnapshot(t, "networkpolicy.yaml"),
		"stage2": seedSnapshot(t, "networkpolicy-ipblock.yaml"),
	}
	decide := func(stage, flow string) map[string]any {
		t.Helper()
		return mustEval(t, "podwall.decide(input."+stage+", "+flow+")", in).(map[string]any)
	}
	tests := []struct {
		stage, flow      string
		allowed          bool
		ingress, egress  string
		ingressRuleRef   string
		reasonsSubstring string
	}{
		{"stage0", `{"from": "default/busybox", "to": "default/httpd-1", "port": 80}`, true, "not isolated", "not isolated", "", "ALLOWED"},
		{"stage1", `{"from": "default/busybox", "to": "default/httpd-1", "port": 80}`, false, "denied", "not isolated", "",
			"denied: selected for ingress by default/access-httpd"},
		{"stage1", `{"from": "default/busybox-access", "to": "default/httpd-1", "protocol": "TCP", "port": 80}`, true, "allowed", "not isolated",
			"default/access-httpd spec.ingress[0].from[0].ports[0]", "allowed by default/access-httpd"},
		{"stage1", `{"from": "default/busybox-access", "to": "10.244.2.11", "protocol": "ICMP"}`, false, "denied", "not isolated", "",
			"ICMP is not a NetworkPolicy protocol"},
		{"stage1", `{"from": "node/k8s-node1", "to": "default/httpd-1", "port": 80}`, false, "denied", "not applicable", "", "DENIED"},
		{"stage2", `{"from": "node/k8s-node1", "to": "default/httpd-1", "port": 80}`, true, "allowed", "not applicable",
			"default/access-httpd spec.ingress[0].from[1].ports[0]", "192.168.2.0/24"},
		{"stage2", `{"from": "203.0.113.9", "to": "default/httpd-2", "port": 80}`, false, "denied", "not applicable", "", "DENIED"},
	}
	for _, tc := range tests {
		d := decide(tc.stage, tc.flow)
		ing, eg := d["ingress"].(map[string]any), d["egress"].(map[string]any)
		if d["allowed"] != tc.allowed || ing["outcome"] != tc.ingress || eg["outcome"] != tc.egress {
			t.Errorf("%s %s: allowed %v ingress %v egress %v, want %v %v %v", tc.stage, tc.flow, d["allowed"], ing["outcome"], eg["outcome"],
				tc.allowed, tc.ingress, tc.egress)
		}
		if tc.ingressRuleRef != "" {
			rule, _ := ing["rule"].(map[string]any)
			if rule["ref"] != tc.ingressRuleRef || rule["name"] != "access-httpd" || rule["namespace"] != "default" || rule["direction"] != "ingress" {
				t.Errorf("%s %s: ingress rule %v, want %s", tc.stage, tc.flow, rule, tc.ingressRuleRef)
			}
		} else if ing["rule"] != nil {
			t.Errorf("%s %s: ingress rule %v, want null", tc.stage, tc.flow, ing["rule"])
		}
		if r, _ := d["reasons"].(string); !strings.Contains(r, tc.reasonsSubstring) {
			t.Errorf("%s %s: reasons %q lack %q", tc.stage, tc.flow, r, tc.reasonsSubstring)
		}
	}
	pols := decide("stage1", `{"from": "default/busybox", "to": "default/httpd-1", "port": 80}`)["ingress"].(map[string]any)["policies"]
	if !reflect.DeepEqual(pols, []any{"default/access-httpd"}) {
		t.Errorf("ingress policies %v", pols)
	}
}

func TestDecideErrors(t *testing.T) {
	in := map[string]any{"seed": seedSnapshot(t, "networkpolicy.yaml")}
	const name = "podwall.decide"
	wantBuiltinError(t, `podwall.decide(input.seed, {"from": "default/nobody", "to": "default/httpd-1", "port": 80})`, in, name,
		"default/nobody", "unknown")
	wantBuiltinError(t, `podwall.decide(input.seed, {"from": "default/busybox", "to": "default/httpd-1"})`, in, name, "missing port")
	wantBuiltinError(t, `podwall.decide(input.seed, {"from": "default/busybox", "to": "default/httpd-1", "port": 0})`, in, name,
		"out of range")
	wantBuiltinError(t, `podwall.decide(input.seed, {"from": "a/b/c", "to": "default/httpd-1", "port": 80})`, in, name,
		"argument 2 (flow): from", "a/b/c")
	wantBuiltinError(t, `podwall.decide(input.seed, {"src": "default/busybox", "to": "default/httpd-1", "port": 80})`, in, name,
		`unknown field "src"`)
	wantBuiltinError(t, `podwall.decide({"pod": []}, {"from": "1.2.3.4", "to": "1.2.3.5", "port": 80})`, nil, name,
		`argument 1 (snapshot): unknown field "pod"`)
	wantBuiltinError(t, `podwall.decide({"pods": [1]}, {"from": "1.2.3.4", "to": "1.2.3.5", "port": 80})`, nil, name,
		"pods[0]: want an object, got number")
	wantBuiltinError(t, `podwall.decide({"policies": [{"metadata": {"name": "bad", "namespace": "x"}, "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/40"}}]}]}}]},
		{"from": "1.2.3.4", "to": "1.2.3.5", "port": 80})`, nil, name, "x/bad", "spec.ingress[0].from[0].ipBlock.cidr")
}

// TestSnapshotErrors: what podwall.decide would refuse, one message per
// object, and nothing for a snapshot it decides on.
func TestSnapshotErrors(t *testing.T) {
	in := map[string]any{"seed": seedSnapshot(t, "networkpolicy.yaml")}
	if got := mustEval(t, "podwall.snapshot_errors(input.seed)", in); !reflect.DeepEqual(got, []any{}) {
		t.Errorf("seed: %v, want []", got)
	}
	got := mustEval(t, `podwall.snapshot_errors({"policies": [
		{"metadata": {"name": "bad", "namespace": "x"}, "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.1/24"}}]}]}},
		{"metadata": {"name": "worse", "namespace": "y"}, "spec": {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Has"}]}}}
	]})`, nil).([]any)
	if len(got) != 2 || !strings.HasPrefix(got[0].(string), "NetworkPolicy x/bad: spec.ingress[0].from[0].ipBlock.cidr") ||
		!strings.HasPrefix(got[1].(string), "NetworkPolicy y/worse: spec.podSelector") {
		t.Errorf("two bad policies: %q", got)
	}
	got = mustEval(t, `podwall.snapshot_errors({"pods": [1]})`, nil).([]any)
	if len(got) != 1 || !strings.Contains(got[0].(string), "pods[0]: want an object, got number") {
		t.Errorf("a pod that is a number: %q", got)
	}
	wantBuiltinError(t, `podwall.snapshot_errors(input.x)`, map[string]any{"x": []any{}}, "podwall.snapshot_errors", "argument 1 (snapshot)")
}

func TestDecideBuildsOnceAQuery(t *testing.T) {
	in := map[string]any{"seed": seedSnapshot(t, "networkpolicy.yaml")}
	before := engineBuilds.Load()
	got := mustEval(t, `[d.allowed |
		some src in ["default/busybox", "default/busybox-access"]
		some dst in ["default/httpd-1", "default/httpd-2", "default/httpd-3"]
		some port in [80, 81]
		d := podwall.decide(input.seed, {"from": src, "to": dst, "port": port})
	]`, in)
	if n := len(got.([]any)); n != 12 {
		t.Fatalf("%d decisions, want 12", n)
	}
	if built := engineBuilds.Load() - before; built != 1 {
		t.Errorf("12 decisions on one snapshot built %d engines, want 1", built)
	}
	// A different snapshot in the same query is its own engine.
	before = engineBuilds.Load()
	in["other"] = seedSnapshot(t)
	mustEval(t, `[podwall.decide(input.seed, {"from": "default/busybox", "to": "default/httpd-1", "port": 80}),
		podwall.decide(input.other, {"from": "default/busybox", "to": "default/httpd-1", "port": 80}),
		podwall.decide(input.seed, {"from": "default/busybox", "to": "default/httpd-2", "port": 80})]`, in)
	if built := engineBuilds.Load() - before; built != 2 {
		t.Errorf("two snapshots built %d engines, want 2", built)
	}
	// A snapshot policylib refuses is compiled once too, within a query and
	// across queries: the refusal is kept.
	in = map[string]any{"bad": map[string]any{"pods": []any{map[string]any{
		"metadata": map[string]any{"name": "p", "namespace": "default"}, "status": map[string]any{"podIP": "not-an-ip"}}}}}
	before, compiles := engineBuilds.Load(), engineCompiles.Load()
	for range 2 {
		if got := mustEval(t, `[podwall.snapshot_errors(input.bad), podwall.snapshot_errors(input.bad)]`, in).([]any); len(got[0].([]any)) != 1 {
			t.Fatalf("snapshot_errors: %v", got)
		}
	}
	if built, compiled := engineBuilds.Load()-before, engineCompiles.Load()-compiles; built != 2 || compiled != 1 {
		t.Errorf("a refused snapshot, twice in each of two queries: %d builds, %d compiles; want 2 and 1", built, compiled)
	}
}

func TestLint(t *testing.T) {
	snap := seedSnapshot(t, "networkpolicy.yaml")
	snap["policies"] = append(snap["policies"].([]any), toJSON(t, map[string]any{
		"metadata": map[string]any{"name": "everywhere", "namespace": "default"},
		"spec": map[string]any{"podSelector": map[string]any{}, "ingress": []any{
			map[string]any{"from": []any{map[string]any{"ipBlock": map[string]any{"cidr": "0.0.0.0/0"}}}},
		}},
	}), toJSON(t, map[string]any{
		"metadata": map[string]any{"name": "invalid", "namespace": "default"},
		"spec":     map[string]any{"podSelector": map[string]any{}, "policyTypes": []any{"Sideways"}},
	}))
	got := mustEval(t, `{[f.severity, f.code, f.policy.name, f.field] | some f in podwall.lint(input)}`, snap)
	for _, want := range [][]any{
		{"warning", "ingress-from-anywhere", "everywhere", "spec.ingress[0].from[0].ipBlock.cidr"},
		{"error", "invalid", "invalid", "spec.policyTypes[0]"},
	} {
		found := false
		for _, f := range got.([]any) {
			found = found || reflect.DeepEqual(f, want)
		}
		if !found {
			t.Errorf("lint findings %v lack %v", got, want)
		}
	}
	clean := mustEval(t, `podwall.lint(input)`, seedSnapshot(t, "networkpolicy.yaml"))
	if n := len(clean.([]any)); n != 0 {
		t.Errorf("the seed's stage 1 policy has %d findings: %v", n, clean)
	}
	wantBuiltinError(t, `podwall.lint({"namespaces": "default"})`, nil, "podwall.lint", "namespaces", "want an array")
}

// TestTypeChecking shows the declarations at work: a call the compiler can
// see is wrong is a compile error, before any evaluation.
func TestTypeChecking(t *testing.T) {
	_, err := evalBuiltin(t, `podwall.selector_matches("app=web", {})`, nil)
	if err == nil || !strings.Contains(err.Error(), "rego_type_error") {
		t.Errorf("selector_matches with a string selector: %v, want a type error", err)
	}
	_, err = evalBuiltin(t, `podwall.decide({}, {"from": "a/b"}, "extra")`, nil)
	if err == nil || !strings.Contains(err.Error(), "rego_type_error") {
		t.Errorf("decide with three arguments: %v, want a type error", err)
	}
}

// TestRegisterGlobal registers the built-ins in OPA's global tables, as
// `podwall opa` does, and calls them through a plain rego.Rego.
func TestRegisterGlobal(t *testing.T) {
	RegisterGlobal()
	RegisterGlobal() // idempotent
	for _, d := range Declarations() {
		b, ok := ast.BuiltinMap[d.Name]
		if !ok {
			t.Fatalf("%s not registered", d.Name)
		}
		if b.Decl.String() != d.Decl.String() {
			t.Errorf("%s registered as %s, declared %s", d.Name, b.Decl, d.Decl)
		}
	}
	rs, err := rego.New(rego.Query(`podwall.selector_matches({"matchLabels": {"a": "b"}}, {"a": "b"})`)).Eval(context.Background())
	if err != nil || !rs.Allowed() {
		t.Fatalf("global selector_matches: %v %v", rs, err)
	}
	_, err = rego.New(rego.Query(`podwall.selector_matches({"matchExpressions": [{"key": "a", "operator": "Foo"}]}, {})`),
		rego.StrictBuiltinErrors(true)).Eval(context.Background())
	var te *topdown.Error
	if !errors.As(err, &te) || te.Code != topdown.BuiltinErr || !strings.HasPrefix(te.Message, "podwall.selector_matches: ") {
		t.Errorf("global error: %v", err)
	}
}

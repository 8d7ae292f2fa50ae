package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const seed = "../../examples/seed"

// stages are the seed scenario's three stages (see examples/seed/README.md).
var stages = []struct {
	name  string
	files []string
}{
	{"stage0", []string{seed + "/cluster"}},
	{"stage1", []string{seed + "/cluster", seed + "/original/networkpolicy.yaml"}},
	{"stage2", []string{seed + "/cluster", seed + "/original/networkpolicy-ipblock.yaml"}},
}

func fileArgs(files []string) []string {
	var out []string
	for _, f := range files {
		out = append(out, "-f", f)
	}
	return out
}

// podwall runs the CLI in-process.
func podwall(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runCLI(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// mustRun runs the CLI and fails the test unless it exits 0 with nothing
// on stderr.
func mustRun(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	code, out, errOut := podwall(t, stdin, args...)
	if code != 0 || errOut != "" {
		t.Fatalf("podwall %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
	}
	return out
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestReachGolden(t *testing.T) {
	for _, st := range stages {
		for _, format := range []string{"table", "json"} {
			t.Run(st.name+"/"+format, func(t *testing.T) {
				args := append([]string{"reach"}, fileArgs(st.files)...)
				args = append(args, "--from", "pods", "--from", "nodes", "--port", "80", "-o", format)
				golden(t, "reach-"+st.name+"."+format+".golden", mustRun(t, "", args...))
			})
		}
	}
}

type reachResult struct {
	From       string `json:"from"`
	To         string `json:"to"`
	Port       int32  `json:"port"`
	Protocol   string `json:"protocol"`
	Allowed    bool   `json:"allowed"`
	Pod        string `json:"pod"`
	TargetPort int32  `json:"targetPort"`
	Via        string `json:"via"`
	Reason     string `json:"reason"`
}

func reach(t *testing.T, files []string, extra ...string) []reachResult {
	t.Helper()
	args := append(append([]string{"reach"}, fileArgs(files)...), extra...)
	args = append(args, "-o", "json")
	out := mustRun(t, "", args...)
	var doc struct {
		Results []reachResult `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("reach output is not JSON: %v\n%s", err, out)
	}
	return doc.Results
}

var httpdPods = []string{"default/httpd-1", "default/httpd-2", "default/httpd-3"}
var seedNodes = []string{"node/k8s-master", "node/k8s-node1", "node/k8s-node2"}

// verdict looks a flow up, failing when it is missing.
func verdict(t *testing.T, rs []reachResult, from, to, proto string) reachResult {
	t.Helper()
	for _, r := range rs {
		if r.From == from && r.To == to && r.Protocol == proto {
			return r
		}
	}
	t.Fatalf("no result for %s -> %s %s", from, to, proto)
	return reachResult{}
}

// TestReachSeedOutcomes checks the walkthrough's observations, as listed in
// examples/seed/README.md, on reach's JSON.
func TestReachSeedOutcomes(t *testing.T) {
	type want struct {
		from, to, proto string
		allowed         bool
	}
	each := func(froms, tos []string, proto string, allowed bool) []want {
		var out []want
		for _, f := range froms {
			for _, to := range tos {
				out = append(out, want{f, to, proto, allowed})
			}
		}
		return out
	}
	busybox, access := []string{"default/busybox"}, []string{"default/busybox-access"}
	expect := map[string][]want{
		"stage0": slices.Concat(
			each(busybox, httpdPods, "TCP", true),
			each(busybox, httpdPods, "ICMP", true),
			each(seedNodes, httpdPods, "TCP", true),
		),
		"stage1": slices.Concat(
			each(busybox, httpdPods, "TCP", false),
			each(busybox, httpdPods, "ICMP", false),
			each(seedNodes, httpdPods, "TCP", false),
			each(access, httpdPods, "TCP", true),
			each(access, httpdPods, "ICMP", false),
		),
		"stage2": slices.Concat(
			each(seedNodes, httpdPods, "TCP", true),
			each(busybox, httpdPods, "TCP", false),
			each(access, httpdPods, "TCP", true),
		),
	}
	for _, st := range stages {
		t.Run(st.name, func(t *testing.T) {
			rs := reach(t, st.files, "--from", "pods", "--from", "nodes", "--port", "80", "--protocol", "TCP", "--protocol", "ICMP")
			for _, w := range expect[st.name] {
				r := verdict(t, rs, w.from, w.to, w.proto)
				if r.Allowed != w.allowed {
					t.Errorf("%s -> %s %s: allowed=%t (%s), want %t", w.from, w.to, w.proto, r.Allowed, r.Reason, w.allowed)
				}
				if w.proto == "ICMP" && r.Port != 0 {
					t.Errorf("%s -> %s ICMP: port %d, want 0", w.from, w.to, r.Port)
				}
			}
		})
	}
}

// TestReachContract checks the shape other tools rely on: exactly the five
// fields, typed, one per ordered pod pair (self pairs included) per port,
// ports in flag order, sorted by from then to.
func TestReachContract(t *testing.T) {
	args := append([]string{"reach"}, fileArgs(stages[1].files)...)
	out := mustRun(t, "", append(args, "--port", "8080", "--port", "80", "-o", "json")...)
	var doc map[string][]map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	results := doc["results"]
	const pods = 5
	if len(results) != 2*pods*pods {
		t.Fatalf("%d results, want %d", len(results), 2*pods*pods)
	}
	for i, r := range results {
		for _, k := range []string{"from", "to", "protocol"} {
			if _, ok := r[k].(string); !ok {
				t.Fatalf("result %d: %q is %T, want string", i, k, r[k])
			}
		}
		if p, ok := r["port"].(float64); !ok || p != float64(int32(p)) {
			t.Fatalf("result %d: port %v is not an integer", i, r["port"])
		}
		if _, ok := r["allowed"].(bool); !ok {
			t.Fatalf("result %d: allowed is %T, want bool", i, r["allowed"])
		}
		if want := []float64{8080, 80}[i/(pods*pods)]; r["port"] != want {
			t.Fatalf("result %d: port %v, want %v (ports in flag order)", i, r["port"], want)
		}
		if i%(pods*pods) > 0 {
			prev := results[i-1]
			if c := strings.Compare(prev["from"].(string), r["from"].(string)); c > 0 || c == 0 && prev["to"].(string) >= r["to"].(string) {
				t.Fatalf("results %d and %d are not sorted by from, then to", i-1, i)
			}
		}
		if r["from"] == r["to"] && r["from"] == "default/busybox" && r["allowed"] != true {
			t.Errorf("self pair default/busybox: %v", r)
		}
	}
	if r := results[2]; r["reason"] != "ingress denied: default/httpd-1 selected by default/access-httpd, no rule allows" {
		t.Errorf("reason %q", r["reason"])
	}
}

func TestReachService(t *testing.T) {
	rs := reach(t, stages[1].files, "--to", "svc/default/httpd-svc", "--port", "8080")
	if len(rs) != 5*3 {
		t.Fatalf("%d results, want 15 (5 pods x 3 backends)", len(rs))
	}
	for _, r := range rs {
		if r.To != "svc/default/httpd-svc" || r.Via != "svc/default/httpd-svc" || r.Port != 8080 || r.TargetPort != 80 || !slices.Contains(httpdPods, r.Pod) {
			t.Errorf("result %+v: want to/via svc/default/httpd-svc, port 8080, targetPort 80, an httpd pod", r)
		}
		want := r.From == "default/busybox-access"
		if r.From == "default/busybox" || want {
			if r.Allowed != want {
				t.Errorf("%s -> %s via %s: allowed=%t, want %t", r.From, r.Pod, r.Via, r.Allowed, want)
			}
		}
	}
	// The Service port is not the pods' port: NetworkPolicy sees port 80.
	code, out, errOut := podwall(t, "", append(append([]string{"reach"}, fileArgs(stages[1].files)...), "--to", "svc/default/httpd-svc", "--port", "80")...)
	if code != 2 || out != "" || !strings.Contains(errOut, "no such TCP port") {
		t.Errorf("Service port 80: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestReachEndpoints(t *testing.T) {
	// An outside address is judged by the ipBlock only in stage 2 when it is a node's.
	rs := reach(t, stages[2].files, "--from", "192.168.2.50", "--from", "203.0.113.7", "--from", "10.244.2.21", "--to", "default/httpd-1", "--port", "80")
	got := map[string]bool{}
	for _, r := range rs {
		got[r.From] = r.Allowed
	}
	want := map[string]bool{"192.168.2.50": true, "203.0.113.7": false, "10.244.2.21": true}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s -> default/httpd-1: allowed=%t, want %t", k, got[k], v)
		}
	}
	// nodes as destinations: pods are not isolated for egress.
	for _, r := range reach(t, stages[1].files, "--to", "nodes", "--port", "10250") {
		if !r.Allowed || !strings.HasPrefix(r.To, "node/") {
			t.Errorf("%+v: want allowed, to a node", r)
		}
	}
}

func TestReachYAMLMatchesJSON(t *testing.T) {
	args := append([]string{"reach"}, fileArgs(stages[1].files)...)
	args = append(args, "--from", "nodes", "--to", "svc/default/httpd-svc", "--port", "8080")
	j := mustRun(t, "", append(args, "-o", "json")...)
	y := mustRun(t, "", append(args, "-o", "yaml")...)
	var fromJSON, fromYAML any
	if err := json.Unmarshal([]byte(j), &fromJSON); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(y), &fromYAML); err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(fromJSON)
	b, _ := json.Marshal(fromYAML)
	if !bytes.Equal(a, b) {
		t.Errorf("yaml and json differ:\n%s\n%s", a, b)
	}
}

func TestStdin(t *testing.T) {
	var all []string
	for _, f := range []string{seed + "/cluster/nodes.yaml", seed + "/cluster/workloads.yaml", seed + "/original/networkpolicy.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, string(b))
	}
	want := mustRun(t, "", append(append([]string{"reach"}, fileArgs(stages[1].files)...), "--from", "pods", "--from", "nodes", "--port", "80", "-o", "json")...)
	got := mustRun(t, strings.Join(all, "\n---\n"), "reach", "-f", "-", "--from", "pods", "--from", "nodes", "--port", "80", "-o", "json")
	if got != want {
		t.Errorf("reach -f - differs from reach -f files:\n%s", got)
	}
	// Mixed: the cluster from a directory, the policy on stdin.
	got = mustRun(t, all[2], "reach", "-f", seed+"/cluster", "-f", "-", "--from", "pods", "--from", "nodes", "--port", "80", "-o", "json")
	if got != want {
		t.Errorf("reach -f dir -f - differs from reach -f files:\n%s", got)
	}
	// Problems on stdin are located in <stdin>.
	b, err := os.ReadFile("testdata/bad/invalid-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := podwall(t, string(b), "reach", "-f", "-", "--port", "80")
	if code != 2 || out != "" || !strings.Contains(errOut, "<stdin>#2: NetworkPolicy default/bad-port: spec.ingress[0].ports[0].port: ") {
		t.Errorf("invalid policy on stdin: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestExplainGolden(t *testing.T) {
	tests := []struct {
		name  string
		files []string
		args  []string
	}{
		{"explain-describe-stage2", stages[2].files, nil},
		{"explain-service-stage1", stages[1].files, []string{"--from", "default/busybox", "--from", "default/busybox-access", "--to", "svc/default/httpd-svc", "--port", "8080"}},
		{"explain-icmp-stage1", stages[1].files, []string{"--from", "default/busybox-access", "--to", "default/httpd-1", "--protocol", "ICMP"}},
		{"explain-nodeport-stage1", stages[1].files, []string{"--from", "203.0.113.7", "--to", "node/k8s-node1", "--node-port", "31000"}},
		{"explain-nodeport-stage2", stages[2].files, []string{"--from", "203.0.113.7", "--to", "node/k8s-node1", "--node-port", "31000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{"explain"}, fileArgs(tt.files)...), tt.args...)
			golden(t, tt.name+".golden", mustRun(t, "", args...))
		})
	}
}

func TestExplainJSON(t *testing.T) {
	args := append([]string{"explain"}, fileArgs(stages[2].files)...)
	out := mustRun(t, "", append(args, "--from", "203.0.113.7", "--to", "node/k8s-node1", "--node-port", "31000", "-o", "json")...)
	var doc struct {
		Explanations []struct {
			reachResult
			Source struct {
				Endpoint, Kind, Address string
			} `json:"source"`
			Ingress struct {
				Outcome  string   `json:"outcome"`
				Policies []string `json:"policies"`
				Rule     string   `json:"rule"`
			} `json:"ingress"`
			Notes []string `json:"notes"`
		} `json:"explanations"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Explanations) != 3 {
		t.Fatalf("%d explanations, want one per backend", len(doc.Explanations))
	}
	for _, x := range doc.Explanations {
		if !x.Allowed || x.Port != 31000 || x.TargetPort != 80 || x.Source.Kind != "node" || x.Source.Address != "192.168.2.101" ||
			x.Ingress.Outcome != "allowed" || x.Ingress.Rule != "default/access-httpd spec.ingress[0].from[1].ports[0]" || len(x.Notes) == 0 {
			t.Errorf("explanation %+v", x)
		}
	}
	out = mustRun(t, "", append(args, "-o", "yaml")...)
	if !strings.Contains(out, "policy: default/access-httpd") || !strings.Contains(out, "source: ../../examples/seed/original/networkpolicy-ipblock.yaml#1") {
		t.Errorf("explain -o yaml:\n%s", out)
	}
}

func TestLint(t *testing.T) {
	code, out, errOut := podwall(t, "", "lint", "-f", "testdata/bad/invalid-policy.yaml")
	if code != 1 || errOut != "" {
		t.Fatalf("lint of an invalid policy: exit %d, stderr %q; want 1", code, errOut)
	}
	for _, want := range []string{"SEVERITY", "error", "invalid", "default/bad-port", "spec.ingress[0].ports[0].port", "testdata/bad/invalid-policy.yaml#2"} {
		if !strings.Contains(out, want) {
			t.Errorf("lint table lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = podwall(t, "", "lint", "-f", "testdata/bad/invalid-policy.yaml", "-o", "json")
	var doc struct {
		Findings []map[string]string `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != 1 || len(doc.Findings) == 0 {
		t.Fatalf("lint -o json: exit %d, %v\n%s", code, err, out)
	}
	f := doc.Findings[0]
	if f["severity"] != "error" || f["code"] != "invalid" || f["policy"] != "default/bad-port" || f["field"] != "spec.ingress[0].ports[0].port" || f["source"] != "testdata/bad/invalid-policy.yaml#2" {
		t.Errorf("finding %v", f)
	}
	// The seed's policies are valid: warnings at most, exit 0.
	for _, st := range stages {
		code, out, errOut := podwall(t, "", append([]string{"lint"}, append(fileArgs(st.files), "-o", "json")...)...)
		if code != 0 || errOut != "" || !json.Valid([]byte(out)) {
			t.Errorf("lint %s: exit %d, stderr %q, stdout %q", st.name, code, errOut, out)
		}
	}
}

// TestBadInput: every kind of bad input exits 2 with nothing on stdout and
// exactly one line on stderr saying where the problem is.
func TestBadInput(t *testing.T) {
	stage1 := fileArgs(stages[1].files)
	withStage1 := func(args ...string) []string { return append(append([]string{args[0]}, stage1...), args[1:]...) }
	tests := []struct {
		name string
		args []string
		want []string // substrings of the message
	}{
		{"missing file", []string{"reach", "-f", "testdata/bad/nope.yaml", "--port", "80"},
			[]string{"podwall: testdata/bad/nope.yaml: ", "no such file"}},
		{"missing file/explain", []string{"explain", "-f", "testdata/bad/nope.yaml"},
			[]string{"podwall: testdata/bad/nope.yaml: "}},
		{"missing file/lint", []string{"lint", "-f", "testdata/bad/nope.yaml"},
			[]string{"podwall: testdata/bad/nope.yaml: "}},
		{"malformed YAML", []string{"reach", "-f", "testdata/bad/malformed.yaml", "--port", "80"},
			[]string{"podwall: testdata/bad/malformed.yaml#1: invalid YAML: line "}},
		{"malformed YAML/lint", []string{"lint", "-f", "testdata/bad/malformed.yaml"},
			[]string{"podwall: testdata/bad/malformed.yaml#1: "}},
		{"unknown field", []string{"explain", "-f", "testdata/bad/typo.yaml"},
			[]string{"podwall: testdata/bad/typo.yaml#1: NetworkPolicy default/typo: ", `"spec.podSelecter"`}},
		{"invalid policy/reach", []string{"reach", "-f", seed + "/cluster", "-f", "testdata/bad/invalid-policy.yaml", "--port", "80"},
			[]string{"podwall: testdata/bad/invalid-policy.yaml#2: NetworkPolicy default/bad-port: spec.ingress[0].ports[0].port: Invalid value: 0"}},
		{"invalid policy/explain", []string{"explain", "-f", "testdata/bad/invalid-policy.yaml"},
			[]string{"podwall: testdata/bad/invalid-policy.yaml#2: NetworkPolicy default/bad-port: spec.ingress[0].ports[0].port: "}},
		{"invalid pod address", []string{"reach", "-f", "testdata/bad/bad-pod-ip.yaml", "--port", "80"},
			[]string{"podwall: testdata/bad/bad-pod-ip.yaml#1: Pod default/odd: status.podIP: "}},
		{"invalid pod address/lint", []string{"lint", "-f", "testdata/bad/bad-pod-ip.yaml"},
			[]string{"podwall: testdata/bad/bad-pod-ip.yaml#1: Pod default/odd: status.podIP: "}},
		{"duplicate object", []string{"reach", "-f", seed + "/cluster", "-f", seed + "/original/httpd-demo.yaml", "--port", "80"},
			[]string{"podwall: ../../examples/seed/original/httpd-demo.yaml#2: Service default/httpd-svc: duplicate object"}},
		{"unknown pod", withStage1("reach", "--port", "80", "--from", "default/nope"),
			[]string{"podwall: --from default/nope: unknown pod"}},
		{"unknown pod/explain", withStage1("explain", "--port", "80", "--to", "default/nope"),
			[]string{"podwall: --to default/nope: unknown pod"}},
		{"unknown node", withStage1("reach", "--port", "80", "--from", "node/nope"),
			[]string{"podwall: --from node/nope: unknown node"}},
		{"unknown service", withStage1("reach", "--port", "80", "--to", "svc/default/nope"),
			[]string{"podwall: --to svc/default/nope: unknown Service"}},
		{"service as source", withStage1("reach", "--port", "80", "--from", "svc/default/httpd-svc"),
			[]string{"podwall: --from svc/default/httpd-svc: "}},
		{"bad endpoint", withStage1("reach", "--port", "80", "--to", "nonsense"),
			[]string{"podwall: --to: \"nonsense\": want "}},
		{"bad port", withStage1("reach", "--port", "http"), []string{`podwall: --port: "http" is not a port number`}},
		{"port 0", withStage1("reach", "--port", "0"), []string{`podwall: --port: "0" is not a port number`}},
		{"port too big", withStage1("explain", "--from", "pods", "--port", "65536"), []string{`podwall: --port: "65536"`}},
		{"no port", withStage1("reach"), []string{"podwall: --port: required"}},
		{"bad node port", withStage1("explain", "--to", "node/k8s-node1", "--node-port", "x"), []string{"podwall: --node-port: "}},
		{"node port without --to", withStage1("explain", "--from", "203.0.113.7", "--node-port", "31001"), []string{"podwall: --to node/k8s-master: no Service has TCP NodePort 31001"}},
		{"node port to a pod", withStage1("explain", "--to", "default/httpd-1", "--node-port", "31000"), []string{"podwall: --to default/httpd-1: "}},
		{"unknown node port", withStage1("explain", "--to", "node/k8s-node1", "--node-port", "31001"), []string{"podwall: --to node/k8s-node1: no Service has TCP NodePort 31001"}},
		{"bad protocol", withStage1("reach", "--port", "80", "--protocol", "HTTP"), []string{`podwall: --protocol: unknown protocol "HTTP"`}},
		{"unknown output/reach", withStage1("reach", "--port", "80", "-o", "wide"), []string{`podwall: -o/--output "wide": unknown format`}},
		{"unknown output/explain", withStage1("explain", "-o", "xml"), []string{`podwall: -o/--output "xml": unknown format`}},
		{"unknown output/lint", withStage1("lint", "-o", "xml"), []string{`podwall: -o/--output "xml": unknown format`}},
		{"no -f", []string{"reach", "--port", "80"}, []string{"podwall: -f/--filename: required"}},
		{"unknown flag", []string{"reach", "--bogus"}, []string{"podwall: unknown flag: --bogus"}},
		{"flag without value", []string{"reach", "-f"}, []string{"podwall: flag needs an argument"}},
		{"unknown command", []string{"frobnicate"}, []string{`podwall: unknown command "frobnicate"`}},
		{"stray argument", withStage1("reach", "--port", "80", "extra"), []string{`podwall: unexpected argument "extra"`}},
		{"port without flow", withStage1("explain", "--port", "80"), []string{"podwall: --port and --protocol need --from or --to"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := podwall(t, "", tt.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if out != "" {
				t.Errorf("stdout not empty: %q", out)
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

func TestInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errOut bytes.Buffer
	code := runCLI(ctx, append(append([]string{"reach"}, fileArgs(stages[1].files)...), "--port", "80"), strings.NewReader(""), &out, &errOut)
	if code != exitInterrupted || out.Len() != 0 || errOut.String() != "podwall: interrupted\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}

func TestHelp(t *testing.T) {
	out := mustRun(t, "", "--help")
	for _, cmd := range []string{"reach", "explain", "lint"} {
		if !strings.Contains(out, cmd) {
			t.Errorf("help lacks %s:\n%s", cmd, out)
		}
	}
}

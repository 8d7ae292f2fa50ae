package policylib_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/podwall/podwall/manifest"
	"github.com/podwall/podwall/policylib"
)

// lintYAML loads a cluster and policies written inline and lints them.
func lintYAML(t *testing.T, docs ...string) []policylib.Finding {
	t.Helper()
	set, err := manifest.Read(strings.NewReader(strings.Join(docs, "\n---\n")), "lint.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pods, err := set.AllPods()
	if err != nil {
		t.Fatal(err)
	}
	snap := policylib.Snapshot{Namespaces: set.Namespaces, Nodes: set.Nodes, Pods: pods, Services: set.Services, Policies: set.NetworkPolicies}
	out := policylib.Lint(snap)
	// A live engine's Lint says the same, but for the invalid policies it
	// never holds.
	e, _ := policylib.Build(snap)
	valid := slices.DeleteFunc(slices.Clone(out), func(f policylib.Finding) bool { return f.Code == policylib.CodeInvalid })
	if got := e.Lint(); fmt.Sprint(got) != fmt.Sprint(valid) {
		t.Errorf("Engine.Lint\n got %v\nwant %v", got, valid)
	}
	return out
}

const lintWeb = `apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default, labels: {app: web}}
spec:
  containers:
  - name: web
    image: httpd
    ports: [{name: http, containerPort: 80}]
status: {podIP: 10.244.1.5}`

const lintSvc = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 8080, targetPort: 80}]`

func lintPolicy(spec string) string {
	return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: default}\nspec:\n" + spec
}

func TestLint(t *testing.T) {
	tests := []struct {
		name string
		docs []string
		want []string // "severity code field" of every finding
	}{
		{"clean", []string{lintWeb, lintSvc, lintPolicy(`
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 80}]}]`)}, nil},
		{"invalid except outside cidr is an error with its field", []string{lintWeb, lintPolicy(`
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 192.168.2.0/24, except: [192.168.3.0/24]}}]}]`)},
			[]string{"error invalid spec.ingress[0].from[0].ipBlock.except[0]"}},
		{"selects no pods", []string{lintWeb, lintPolicy(`
  podSelector: {matchLabels: {app: db}}
  ingress: [{}]`)}, []string{"warning selects-no-pods spec.podSelector"}},
		{"named port not exposed", []string{lintWeb, lintPolicy(`
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: https}]}]`)}, []string{"warning named-port-not-exposed spec.ingress[0].ports[0].port"}},
		{"service port instead of target port (the seed's 8080 vs 80)", []string{lintWeb, lintSvc, lintPolicy(`
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 8080}]}]`)}, []string{"warning service-port-not-target spec.ingress[0].ports[0].port"}},
		{"ipBlock covering pod addresses", []string{lintWeb, lintPolicy(`
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{ipBlock: {cidr: 10.244.0.0/16}}]}]`)}, []string{"warning ipblock-covers-pods spec.ingress[0].from[0].ipBlock.cidr"}},
		{"ingress from 0.0.0.0/0", []string{lintWeb, lintPolicy(`
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}]}]`)}, []string{"warning ingress-from-anywhere spec.ingress[0].from[0].ipBlock.cidr"}},
		{"shadowed rule in the same policy", []string{lintWeb, lintPolicy(`
  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{port: 80}]
  - from: [{podSelector: {matchLabels: {access: "true"}}}]
    ports: [{port: 80}]`)}, []string{"warning shadowed-rule spec.ingress[1]"}},
		{"egress isolated without DNS", []string{lintWeb, lintPolicy(`
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]`)}, []string{"warning egress-blocks-dns spec.policyTypes"}},
		{"egress to DNS through a named port is DNS", []string{lintWeb, `apiVersion: v1
kind: Pod
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  containers:
  - name: coredns
    image: coredns
    ports: [{name: dns, containerPort: 53, protocol: UDP}]
status: {podIP: 10.244.0.2}`, lintPolicy(`
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {}, podSelector: {matchLabels: {k8s-app: kube-dns}}}]
    ports: [{protocol: UDP, port: dns}]`)}, nil},
		{"allow-all voids default deny", []string{lintWeb,
			"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: default-deny, namespace: default}\nspec: {podSelector: {}}",
			lintPolicy(`
  podSelector: {}
  ingress: [{}]`)}, []string{"warning allow-all-voids-default-deny spec.ingress[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, f := range lintYAML(t, tt.docs...) {
				if f.Message == "" {
					t.Errorf("finding without message: %v", f)
				}
				got = append(got, fmt.Sprintf("%s %s %s", f.Severity, f.Code, f.Field))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("findings\n got %q\nwant %q\nfull: %v", got, tt.want, lintYAML(t, tt.docs...))
			}
		})
	}
}

func TestLintSeed(t *testing.T) {
	cluster, err := manifest.Load("../examples/seed/cluster", "../examples/seed/original/networkpolicy-ipblock.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pods, _ := cluster.AllPods()
	for _, f := range policylib.Lint(policylib.Snapshot{Nodes: cluster.Nodes, Pods: pods, Services: cluster.Services, Policies: cluster.NetworkPolicies}) {
		t.Errorf("the seed's ipBlock policy should lint clean, got %v", f)
	}
}

package main

import (
	"strings"
	"testing"
)

// TestEnforceDryRunGolden: the seed cluster with the stage 1 policy, as
// node k8s-node2 enforces it (httpd-1, httpd-3 and busybox-access are its
// pods), printed offline without root.
func TestEnforceDryRunGolden(t *testing.T) {
	t.Setenv(nodeNameEnv, "")
	out := mustRun(t, "", "enforce", "--dry-run", "--node", "k8s-node2",
		"--manifests", seed+"/cluster", "--manifests", seed+"/original/networkpolicy.yaml")
	golden(t, "enforce-dry-run-k8s-node2-stage1.nft.golden", out)

	// NODE_NAME stands in for --node, and the options reach the script.
	t.Setenv(nodeNameEnv, "k8s-node2")
	out = mustRun(t, "", "enforce", "--dry-run", "--table", "pw_test", "--allow-host-to-local-pods=false",
		"--manifests", seed+"/cluster", "--manifests", seed+"/original/networkpolicy.yaml")
	for _, want := range []string{"table inet pw_test {", "host to local pods: judged by ingress rules", "chain output {"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run with options: no %q in\n%s", want, out)
		}
	}
}

// A policy policylib rejects fails the dry run, named with its field.
func TestEnforceDryRunRejectedPolicy(t *testing.T) {
	code, out, errOut := podwall(t, "", "enforce", "--dry-run", "--node", "k8s-node2",
		"--manifests", seed+"/cluster", "--manifests", "testdata/bad/invalid-policy.yaml")
	if code != 2 || out != "" || !strings.Contains(errOut, "NetworkPolicies rejected") || !strings.Contains(errOut, "NetworkPolicy default/bad-port: spec.ingress[0].ports[0]") {
		t.Errorf("exit %d, stdout %q, stderr %q; want 2, nothing, and the policy with its field", code, out, errOut)
	}
}

func TestEnforceErrors(t *testing.T) {
	t.Setenv(nodeNameEnv, "")
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no node", []string{"enforce", "--dry-run", "--manifests", seed + "/cluster"}, "--node: required"},
		{"unknown node", []string{"enforce", "--dry-run", "--node", "k8s-nod2", "--manifests", seed + "/cluster"}, "--node k8s-nod2: no Node of that name, and no pod on it"},
		{"two sources", []string{"enforce", "--node", "n", "--manifests", seed, "--kubeconfig", "x"}, "not both"},
		{"bad manifest", []string{"enforce", "--dry-run", "--node", "n", "--manifests", "testdata/bad/malformed.yaml"}, "malformed.yaml"},
		{"missing manifest", []string{"enforce", "--dry-run", "--node", "n", "--manifests", "testdata/nothing-here"}, "nothing-here"},
		{"bad table", []string{"enforce", "--dry-run", "--node", "n", "--table", "no table", "--manifests", seed + "/cluster"}, "Table"},
		{"bad node address", []string{"enforce", "--node", "n", "--node-addr", "1.2.3", "--manifests", seed}, "--node-addr 1.2.3"},
		{"bad log format", []string{"enforce", "--node", "n", "--log-format", "xml", "--manifests", seed}, "--log-format"},
		{"argument", []string{"enforce", "stray"}, "unexpected argument"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := podwall(t, "", tt.args...)
			if code != exitBadInput || out != "" || !strings.Contains(errOut, tt.want) || strings.Count(errOut, "\n") != 1 {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and one line with %q", code, out, errOut, tt.want)
			}
		})
	}
}

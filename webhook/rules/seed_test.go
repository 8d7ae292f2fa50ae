package rules_test

import (
	"context"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/podwall/podwall/manifest"
	"github.com/podwall/podwall/webhook/config"
	"github.com/podwall/podwall/webhook/rules"
)

const seed = "../../examples/seed"

// seedObjects loads the seed cluster and its two policies.
func seedObjects(t testing.TB) (set *manifest.Set, stage1, stage2 *networkingv1.NetworkPolicy) {
	t.Helper()
	set, err := manifest.Load(seed + "/cluster")
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range []string{"networkpolicy.yaml", "networkpolicy-ipblock.yaml"} {
		s, err := manifest.Load(seed + "/original/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			stage1 = s.NetworkPolicies[0]
		} else {
			stage2 = s.NetworkPolicies[0]
		}
	}
	return set, stage1, stage2
}

func seedPod(t testing.TB, set *manifest.Set, name string) *corev1.Pod {
	t.Helper()
	for _, p := range set.Pods {
		if p.Name == name {
			return p.DeepCopy()
		}
	}
	t.Fatalf("no seed pod %s", name)
	return nil
}

func seedEvaluator(t testing.TB) *rules.Evaluator {
	t.Helper()
	cfg, err := config.Load("../config/testdata/seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e, err := rules.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestSeedScenario walks the seed scenario through the webhook with the
// seed configuration, with the default namespace labelled protected.
func TestSeedScenario(t *testing.T) {
	set, stage1, stage2 := seedObjects(t)
	e := seedEvaluator(t)
	ctx := context.Background()
	defaultNS := namespace("default", map[string]string{"podwall.io/protected": "true"})
	denyAll := e.DefaultDenyPolicy("default")
	httpd := set.Pods[:3]
	cluster := func(objs ...runtime.Object) *rules.MemoryCluster {
		c := rules.NewMemoryCluster(defaultNS, denyAll, stage1)
		for _, p := range httpd {
			c.Set(p)
		}
		c.Set(set.Services[0])
		c.Set(objs...)
		return c
	}
	c := cluster()

	t.Run("busybox without access is mutated to access=false", func(t *testing.T) {
		busybox := seedPod(t, set, "busybox")
		req := request(t, admissionv1.Create, busybox, nil)
		m := e.Mutate(ctx, req, c)
		checkInvariants(t, m)
		patched := applyPatches(t, req, m, &corev1.Pod{})
		if patched.Labels["access"] != "false" || patched.Labels["run"] != "busybox" {
			t.Fatalf("labels after mutation: %v (patches %s)", patched.Labels, mustJSON(t, m.Patches))
		}
		checkResult(t, validate(t, e, c, admissionv1.Create, patched, nil))
	})
	t.Run("busybox without access, validated unmutated, is denied", func(t *testing.T) {
		r := validate(t, e, c, admissionv1.Create, seedPod(t, set, "busybox"), nil)
		checkResult(t, r, "deny requiredLabels missing-label")
		if !strings.Contains(r.Message(), "NetworkPolicies in namespace default that select on it: access-httpd") {
			t.Errorf("message does not name access-httpd: %s", r.Message())
		}
	})
	t.Run("busybox without access and no default configured is denied", func(t *testing.T) {
		e := evaluator(t, labelsConfig(config.Deny, ""))
		busybox := seedPod(t, set, "busybox")
		req := request(t, admissionv1.Create, busybox, nil)
		if m := e.Mutate(ctx, req, c); len(m.Patches) != 0 {
			t.Errorf("patched with no default: %s", mustJSON(t, m.Patches))
		}
		checkResult(t, e.Validate(ctx, req, c), "deny requiredLabels missing-label")
	})
	t.Run("busybox-access is admitted", func(t *testing.T) {
		req := request(t, admissionv1.Create, seedPod(t, set, "busybox-access"), nil)
		if m := e.Mutate(ctx, req, c); len(m.Patches) != 0 {
			t.Errorf("patched: %s", mustJSON(t, m.Patches))
		}
		checkResult(t, e.Validate(ctx, req, c))
	})
	t.Run("the httpd Deployment with access=false is admitted", func(t *testing.T) {
		d := workload("Deployment", "default", "httpd", map[string]string{"name": "networkpolicy-demo", "access": "false"})
		checkResult(t, validate(t, e, c, admissionv1.Create, d, nil))
	})
	t.Run("no default deny in the protected namespace: pods are denied", func(t *testing.T) {
		c := rules.NewMemoryCluster(defaultNS, stage1)
		r := validate(t, e, c, admissionv1.Create, seedPod(t, set, "busybox-access"), nil)
		checkResult(t, r, "deny defaultDeny missing-default-deny")
		if !strings.Contains(r.Message(), "kind: NetworkPolicy") {
			t.Errorf("no policy to apply in %s", r.Message())
		}
	})
	t.Run("default deny absent, namespace unprotected: admitted", func(t *testing.T) {
		c := rules.NewMemoryCluster(namespace("default", nil), stage1)
		checkResult(t, validate(t, e, c, admissionv1.Create, seedPod(t, set, "busybox-access"), nil))
	})
	t.Run("networkpolicy.yaml is admitted", func(t *testing.T) {
		r := validate(t, e, cluster(), admissionv1.Create, stage1, nil)
		checkResult(t, r)
	})
	t.Run("networkpolicy-ipblock.yaml is admitted", func(t *testing.T) {
		checkResult(t, validate(t, e, cluster(), admissionv1.Update, stage2, stage1))
		checkResult(t, validate(t, e, cluster(), admissionv1.Create, stage2, nil))
	})
	t.Run("the 0.0.0.0/0 variant of the ipBlock policy is denied", func(t *testing.T) {
		open := stage2.DeepCopy()
		open.Spec.Ingress[0].From[1].IPBlock.CIDR = "0.0.0.0/0"
		r := validate(t, e, cluster(), admissionv1.Create, open, nil)
		// The lint also sees that 0.0.0.0/0 covers the httpd pods.
		checkResult(t, r, "deny networkPolicyHygiene ingress-from-anywhere", "warn networkPolicyHygiene ipblock-covers-pods")
		if r.Violations[0].Field != "spec.ingress[0].from[1].ipBlock.cidr" {
			t.Errorf("field %q", r.Violations[0].Field)
		}
		// Also in an unprotected namespace.
		c := rules.NewMemoryCluster(namespace("default", nil))
		checkResult(t, validate(t, e, c, admissionv1.Create, open, nil), "deny networkPolicyHygiene ingress-from-anywhere")
	})
	t.Run("the Service port instead of the pod port gets a warning", func(t *testing.T) {
		wrong := stage1.DeepCopy()
		wrong.Spec.Ingress[0].Ports[0].Port.IntVal = 8080
		r := validate(t, e, cluster(), admissionv1.Create, wrong, nil)
		checkResult(t, r, "warn networkPolicyHygiene service-port-not-target")
		if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "target port 80") {
			t.Errorf("warnings %q", r.Warnings)
		}
	})
	t.Run("deleting the last default deny is denied", func(t *testing.T) {
		r := validate(t, e, cluster(), admissionv1.Delete, nil, denyAll)
		checkResult(t, r, "deny defaultDeny last-default-deny")
		// With a second one it is fine.
		second := e.DefaultDenyPolicy("default")
		second.Name = "deny-ingress"
		checkResult(t, validate(t, e, cluster(second), admissionv1.Delete, nil, denyAll))
		// Deleting the stage 1 policy is fine.
		checkResult(t, validate(t, e, cluster(), admissionv1.Delete, nil, stage1))
	})
}

// TestConcurrent evaluates from many goroutines at once (run with -race).
func TestConcurrent(t *testing.T) {
	set, stage1, stage2 := seedObjects(t)
	e := seedEvaluator(t)
	c, err := rules.ClusterFromManifests(set)
	if err != nil {
		t.Fatal(err)
	}
	c.Set(namespace("default", map[string]string{"podwall.io/protected": "true"}), stage1)
	reqs := []*admissionv1.AdmissionRequest{
		request(t, admissionv1.Create, seedPod(t, set, "busybox"), nil),
		request(t, admissionv1.Create, seedPod(t, set, "busybox-access"), nil),
		request(t, admissionv1.Update, stage2, stage1),
		request(t, admissionv1.Delete, nil, stage1),
	}
	want := make([]rules.Result, len(reqs))
	for i, req := range reqs {
		want[i] = e.Validate(context.Background(), req, c)
	}
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 50 {
				j := (g + i) % len(reqs)
				if got := e.Validate(context.Background(), reqs[j], c); got.Allowed != want[j].Allowed || len(got.Violations) != len(want[j].Violations) {
					t.Errorf("request %d: %s, want %s", j, describe(got), describe(want[j]))
				}
				e.Mutate(context.Background(), reqs[j], c)
				c.Set(seedPod(t, set, "httpd-1"))
			}
		}()
	}
	for range 4 {
		<-done
	}
}

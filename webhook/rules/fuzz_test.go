package rules_test

import (
	"context"
	"encoding/json"
	"testing"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/podwall/podwall/webhook/config"
	"github.com/podwall/podwall/webhook/rules"
)

var fuzzKinds = []metav1.GroupVersionKind{
	{Version: "v1", Kind: "Pod"},
	{Group: "apps", Version: "v1", Kind: "Deployment"},
	{Group: "apps", Version: "v1", Kind: "ReplicaSet"},
	{Group: "apps", Version: "v1", Kind: "StatefulSet"},
	{Group: "apps", Version: "v1", Kind: "DaemonSet"},
	{Group: "batch", Version: "v1", Kind: "Job"},
	{Group: "batch", Version: "v1", Kind: "CronJob"},
	{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"},
	{Version: "v1", Kind: "Service"},
	{},
}

var fuzzOps = []admissionv1.Operation{admissionv1.Create, admissionv1.Update, admissionv1.Delete, admissionv1.Connect, ""}

// FuzzValidate feeds arbitrary objects and operations to both sides: they
// must never panic, Results must be consistent, and patches must apply to
// the object they were computed for.
func FuzzValidate(f *testing.F) {
	set, stage1, stage2 := seedObjects(f)
	f.Add(mustJSON(f, set.Pods[3]), []byte(nil), uint8(0), uint8(0), "default")
	f.Add(mustJSON(f, set.Pods[4]), mustJSON(f, set.Pods[3]), uint8(0), uint8(1), "default")
	f.Add(mustJSON(f, stage1), mustJSON(f, stage2), uint8(7), uint8(1), "default")
	f.Add([]byte(nil), mustJSON(f, policy(f, "default", "default-deny", denyIngressSpec)), uint8(7), uint8(2), "default")
	for i, k := range workloadKinds {
		f.Add(mustJSON(f, workload(k, "default", "w", nil)), []byte(nil), uint8(i+1), uint8(0), "")
	}
	f.Add([]byte(`{"metadata":{"labels":null},"spec":{"template":{"metadata":null}}}`), []byte(`{`), uint8(1), uint8(1), "shop")
	f.Add([]byte(`{"spec":{"podSelector":{"matchExpressions":[{"key":"a","operator":"In"}]},"ingress":[{"from":[{"ipBlock":{"cidr":"::/0","except":["x"]}}],"ports":[{"port":"http","endPort":3}]}]}}`), []byte(nil), uint8(7), uint8(0), "shop")

	e := seedEvaluator(f)
	warn := evaluator(f, `exemptNamespaces: []
rules:
  requiredLabels:
    enforcementAction: warn
    labels: [{key: access, allowedValues: ["true", "false"], default: "false"}, {key: a.b/c, default: x}]
  defaultDeny:
    enforcementAction: dryrun
    policyTypes: [Ingress, Egress]
  networkPolicyHygiene: {}
`)
	c, err := rules.ClusterFromManifests(set)
	if err != nil {
		f.Fatal(err)
	}
	c.Set(namespace("default", map[string]string{"podwall.io/protected": "true"}), stage1)
	f.Fuzz(func(t *testing.T, raw, old []byte, kind, op uint8, ns string) {
		req := &admissionv1.AdmissionRequest{
			Kind:      fuzzKinds[int(kind)%len(fuzzKinds)],
			Operation: fuzzOps[int(op)%len(fuzzOps)],
			Namespace: ns,
			Object:    runtime.RawExtension{Raw: raw},
			OldObject: runtime.RawExtension{Raw: old},
		}
		for _, ev := range []*rules.Evaluator{e, warn} {
			r := ev.Validate(context.Background(), req, c)
			checkInvariants(t, r)
			if len(r.Patches) > 0 {
				t.Fatalf("Validate patched: %s", mustJSON(t, r.Patches))
			}
			m := ev.Mutate(context.Background(), req, c)
			checkInvariants(t, m)
			if !m.Allowed {
				t.Fatal("Mutate denied")
			}
			for _, v := range m.Violations {
				if v.Action == config.Deny {
					t.Fatalf("Mutate recorded a deny: %+v", v)
				}
			}
			if len(m.Patches) == 0 {
				continue
			}
			p, err := jsonpatchapply.DecodePatch(mustJSON(t, m.Patches))
			if err != nil {
				t.Fatal(err)
			}
			out, err := p.Apply(raw)
			if err != nil {
				t.Fatalf("patch %s does not apply to %q: %v", mustJSON(t, m.Patches), raw, err)
			}
			if !json.Valid(out) {
				t.Fatalf("patched object is not JSON: %q", out)
			}
		}
	})
}

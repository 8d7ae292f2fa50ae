package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podwall/podwall/internal/envtest"
	"github.com/podwall/podwall/webhook/config"
)

// renderDeploy renders deploy/webhook with the generator component.
func renderDeploy(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	root := envtest.RepoRoot()
	objs, err := envtest.Render(filepath.Join(root, "deploy", "webhook"), filepath.Join(root, "deploy", "components", "defaultdeny-generator"))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func find(objs []*unstructured.Unstructured, kind, name string, into runtime.Object) bool {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			if into != nil {
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, into); err != nil {
					panic(err)
				}
			}
			return true
		}
	}
	return false
}

// TestDeployManifests checks what deploy/ promises without an API server:
// the configuration is valid and exempts what the webhooks skip, the
// Deployment is hardened, and the webhooks are wired as documented.
func TestDeployManifests(t *testing.T) {
	objs := renderDeploy(t)
	cm := &corev1.ConfigMap{}
	if !find(objs, "ConfigMap", "podwall-config", cm) {
		t.Fatal("no ConfigMap podwall-config")
	}
	cfg, err := config.Parse([]byte(cm.Data["podwall.yaml"]), "deploy/webhook/configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := &appsv1.Deployment{}
	if !find(objs, "Deployment", "podwall-webhook", d) {
		t.Fatal("no Deployment")
	}
	if *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %d", *d.Spec.Replicas)
	}
	ctr := d.Spec.Template.Spec.Containers[0]
	sc := ctr.SecurityContext
	if sc == nil || !*sc.ReadOnlyRootFilesystem || !*sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container security context = %+v", sc)
	}
	if ctr.Image != "podwall:latest" {
		t.Errorf("image = %q (kustomization images)", ctr.Image)
	}
	if ctr.ReadinessProbe.HTTPGet.Path != "/readyz" || ctr.LivenessProbe.HTTPGet.Path != "/healthz" || ctr.Resources.Requests.Cpu().IsZero() || ctr.Resources.Requests.Memory().IsZero() {
		t.Errorf("probes or requests missing: %+v", ctr)
	}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if !find(objs, "ValidatingWebhookConfiguration", "podwall", vwc) || !find(objs, "MutatingWebhookConfiguration", "podwall", mwc) {
		t.Fatal("webhook configurations missing")
	}
	check := func(name string, fp *admissionregistrationv1.FailurePolicyType, want admissionregistrationv1.FailurePolicyType, sel *metav1.LabelSelector, timeout *int32, se *admissionregistrationv1.SideEffectClass) {
		if *fp != want {
			t.Errorf("%s: failurePolicy %s, want %s", name, *fp, want)
		}
		if *timeout != 5 || *se != admissionregistrationv1.SideEffectClassNone {
			t.Errorf("%s: timeout %d, sideEffects %s", name, *timeout, *se)
		}
		excluded := sel.MatchExpressions[0].Values
		if sel.MatchExpressions[0].Key != "kubernetes.io/metadata.name" || string(sel.MatchExpressions[0].Operator) != "NotIn" {
			t.Errorf("%s: namespaceSelector %+v", name, sel)
		}
		for _, ns := range excluded {
			if !slices.Contains(cfg.ExemptNamespaces, ns) {
				t.Errorf("%s skips %s, which the configuration does not exempt", name, ns)
			}
		}
		if !slices.Contains(excluded, "kube-system") || !slices.Contains(excluded, "podwall-system") {
			t.Errorf("%s: excluded %v", name, excluded)
		}
	}
	for _, w := range vwc.Webhooks {
		check(w.Name, w.FailurePolicy, admissionregistrationv1.Fail, w.NamespaceSelector, w.TimeoutSeconds, w.SideEffects)
	}
	for _, w := range mwc.Webhooks {
		check(w.Name, w.FailurePolicy, admissionregistrationv1.Ignore, w.NamespaceSelector, w.TimeoutSeconds, w.SideEffects)
	}
	if vwc.Annotations["cert-manager.io/inject-ca-from"] != "podwall-system/podwall-webhook-cert" || !find(objs, "Certificate", "podwall-webhook-cert", nil) || !find(objs, "Issuer", "podwall-selfsigned", nil) {
		t.Error("cert-manager wiring")
	}
}

// TestDeployServerSideDryRun applies every object of deploy/webhook (and
// the generator component) to the real API server with server-side apply
// in dry-run mode, cert-manager's CRDs installed: the API server validates
// every field, the Issuer and Certificate against cert-manager's schemas.
func TestDeployServerSideDryRun(t *testing.T) {
	env := shared.Get(t)
	ctx := context.Background()
	objs := renderDeploy(t)
	// Namespaced objects need their namespace to exist, even in a dry run.
	ensureNamespace(t, env.Client, "podwall-system")
	var kinds []string
	for _, o := range objs {
		err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()),
			client.FieldOwner("podwall-test"), client.ForceOwnership, client.DryRunAll)
		if err != nil {
			t.Errorf("%s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
		kinds = append(kinds, o.GetKind())
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Issuer", "Certificate",
		"Service", "Deployment", "PodDisruptionBudget", "NetworkPolicy", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"} {
		if !slices.Contains(kinds, k) {
			t.Errorf("deploy/webhook has no %s", k)
		}
	}
	// A dry run leaves nothing behind.
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "podwall-system", Name: "podwall-webhook"}, &appsv1.Deployment{}); err == nil {
		t.Error("the dry run created the Deployment")
	}
	// And a broken manifest is caught: the check is not vacuous.
	bad := objs[0].DeepCopy()
	for _, o := range objs {
		if o.GetKind() == "Certificate" {
			bad = o.DeepCopy()
		}
	}
	_ = unstructured.SetNestedField(bad.Object, "not-a-duration", "spec", "duration")
	_ = unstructured.SetNestedField(bad.Object, int64(7), "spec", "dnsNames")
	if err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(bad), client.FieldOwner("podwall-test"), client.DryRunAll); err == nil {
		t.Error("a Certificate with dnsNames: 7 passed the dry run")
	}
}

// TestWebhookLatency measures what podwall adds to a pod create through
// the real API server: creates in a namespace the webhooks see (both
// webhooks called) against creates in one they skip (podwall-system),
// interleaved. 200 creates each with PODWALL_LOAD=1, 30 otherwise.
func TestWebhookLatency(t *testing.T) {
	l := podwallServer(t)
	c := l.env.Client
	ctx := context.Background()
	n := 30
	if os.Getenv("PODWALL_LOAD") == "1" {
		n = 200
	}
	createNamespace(t, c, "latency", nil)
	ensureNamespace(t, c, "podwall-system")
	var on, off []time.Duration
	for i := 0; i < n; i++ {
		for _, ns := range []string{"latency", "podwall-system"} {
			p := pod(ns, fmt.Sprintf("lat-%d", i), map[string]string{"access": "true"})
			t0 := time.Now()
			if err := c.Create(ctx, p); err != nil {
				t.Fatal(err)
			}
			d := time.Since(t0)
			if ns == "latency" {
				on = append(on, d)
			} else {
				off = append(off, d)
			}
		}
	}
	for _, ns := range []string{"latency", "podwall-system"} {
		_ = c.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(ns))
	}
	slices.Sort(on)
	slices.Sort(off)
	t.Logf("pod create through the API server, %d each: webhooks on: median %v, p90 %v; off: median %v, p90 %v; added median %v",
		n, quantile(on, 0.5), quantile(on, 0.9), quantile(off, 0.5), quantile(off, 0.9), quantile(on, 0.5)-quantile(off, 0.5))
}

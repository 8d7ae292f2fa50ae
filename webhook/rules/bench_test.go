package rules_test

import (
	"context"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podwall/podwall/webhook/rules"
)

// BenchmarkPodCreate is a pod CREATE against the seed configuration's three
// rules, in a protected namespace holding the default deny, the stage 1
// policy, the httpd pods and their Service: the webhook's common case.
func BenchmarkPodCreate(b *testing.B) {
	set, stage1, _ := seedObjects(b)
	e := seedEvaluator(b)
	c, err := rules.ClusterFromManifests(set)
	if err != nil {
		b.Fatal(err)
	}
	c.Set(namespace("default", map[string]string{"podwall.io/protected": "true"}), stage1, e.DefaultDenyPolicy("default"))
	ctx := context.Background()
	for _, bc := range []struct {
		name      string
		pod       string
		defaulted bool
		mutate    bool
		allow     bool
	}{
		{"validate/admitted", "busybox-access", false, false, true},
		{"validate/admitted/defaulted", "busybox-access", true, false, true},
		{"validate/denied", "busybox", false, false, false},
		{"mutate/patched", "busybox", false, true, true},
		{"mutate/unchanged", "busybox-access", false, true, true},
		{"mutate/unchanged/defaulted", "busybox-access", true, true, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := seedPod(b, set, bc.pod)
			p.Name += "-new"
			if bc.defaulted {
				p = withAPIServerDefaults(p)
			}
			req := request(b, admissionv1.Create, p, nil)
			eval := e.Validate
			if bc.mutate {
				eval = e.Mutate
			}
			if r := eval(ctx, req, c); r.Allowed != bc.allow {
				b.Fatalf("allowed = %v: %s", r.Allowed, describe(r))
			}
			b.ReportAllocs()
			for b.Loop() {
				eval(ctx, req, c)
			}
		})
	}
}

// BenchmarkNetworkPolicyCreate is the hygiene rule's validation and lint of
// the stage 2 policy in the seed cluster.
func BenchmarkNetworkPolicyCreate(b *testing.B) {
	set, _, stage2 := seedObjects(b)
	e := seedEvaluator(b)
	c, err := rules.ClusterFromManifests(set)
	if err != nil {
		b.Fatal(err)
	}
	req := request(b, admissionv1.Create, stage2, nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		e.Validate(ctx, req, c)
	}
}

// withAPIServerDefaults fills in what the API server adds to a pod before
// admission (service account token volume, tolerations, defaults of every
// kind), so the benchmark decodes a pod of realistic size (about 2.5 kB).
func withAPIServerDefaults(p *corev1.Pod) *corev1.Pod {
	p = p.DeepCopy()
	p.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBestEffort}
	p.UID = "9b1c7e2a-5d4f-4a0e-8c61-2f1e3d4c5b6a"
	p.CreationTimestamp = metav1.Now()
	p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl-run", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", FieldsType: "FieldsV1",
		FieldsV1: metav1.NewFieldsV1(`{"f:metadata":{"f:labels":{".":{},"f:access":{},"f:run":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"busybox\"}":{".":{},"f:image":{},"f:name":{}}}}}`)}}
	expiry := int64(3607)
	mode := int32(420)
	p.Spec.Volumes = []corev1.Volume{{Name: "kube-api-access-x7k2p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: &mode,
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{ExpirationSeconds: &expiry, Path: "token"}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
		}}}}}
	c := &p.Spec.Containers[0]
	c.ImagePullPolicy = corev1.PullAlways
	c.TerminationMessagePath = "/dev/termination-log"
	c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
	c.VolumeMounts = []corev1.VolumeMount{{Name: "kube-api-access-x7k2p", ReadOnly: true, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}}
	c.Command = []string{"sleep", "3600"}
	grace := int64(30)
	toleration := int64(300)
	prio := int32(0)
	enable := true
	policy := corev1.PreemptLowerPriority
	p.Spec.RestartPolicy = corev1.RestartPolicyAlways
	p.Spec.TerminationGracePeriodSeconds = &grace
	p.Spec.DNSPolicy = corev1.DNSClusterFirst
	p.Spec.ServiceAccountName = "default"
	p.Spec.SecurityContext = &corev1.PodSecurityContext{}
	p.Spec.SchedulerName = "default-scheduler"
	p.Spec.Priority = &prio
	p.Spec.EnableServiceLinks = &enable
	p.Spec.PreemptionPolicy = &policy
	p.Spec.Tolerations = []corev1.Toleration{
		{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &toleration},
		{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &toleration},
	}
	return p
}

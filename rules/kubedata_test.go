package rules_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podwall/podwall/rules"
)

// kubeObjects are one object of each type data.kubernetes holds, with the
// field types a conversion could get wrong (times, quantities,
// int-or-strings, integers, managed fields).
type kubeObject struct {
	obj                    runtime.Object
	apiVersion, kind, path string
}

func kubeObjects() []kubeObject {
	now := metav1.Now()
	port := intstr.FromString("http")
	objs := []runtime.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"team": "a"}, CreationTimestamp: now}},
		&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Labels: map[string]string{"app": "web"},
				ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "web", Image: "httpd",
				Ports:     []corev1.ContainerPort{{Name: "http", ContainerPort: 80}},
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}},
			}}},
			Status: corev1.PodStatus{PodIP: "10.0.0.5", PodIPs: []corev1.PodIP{{IP: "10.0.0.5"}}, StartTime: &now},
		},
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 8080, TargetPort: port}}},
		},
		&networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "deny"},
			Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
		},
	}
	return []kubeObject{
		{objs[0], "v1", "Namespace", "/kubernetes/namespaces/shop"},
		{objs[1], "v1", "Pod", "/kubernetes/pods/shop/web"},
		{objs[2], "v1", "Service", "/kubernetes/services/shop/web"},
		{objs[3], "networking.k8s.io/v1", "NetworkPolicy", "/kubernetes/networkpolicies/shop/deny"},
	}
}

// TestKubernetesObjectValue: the value is the object's JSON, with
// apiVersion and kind, without managedFields.
func TestKubernetesObjectValue(t *testing.T) {
	for _, o := range kubeObjects() {
		got, err := rules.KubernetesObjectValue(o.obj)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := json.Marshal(o.obj)
		if err != nil {
			t.Fatal(err)
		}
		var want map[string]any
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatal(err)
		}
		delete(want["metadata"].(map[string]any), "managedFields")
		want["apiVersion"], want["kind"] = o.apiVersion, o.kind
		gv, err := ast.InterfaceToValue(got)
		if err != nil {
			t.Fatal(err)
		}
		wv, err := ast.InterfaceToValue(want)
		if err != nil {
			t.Fatal(err)
		}
		if gv.Compare(wv) != 0 {
			t.Errorf("%s:\n got %v\nwant %v", o.kind, gv, wv)
		}
	}
}

// TestPutKubernetesObject writes each object where kube-mgmt would, then
// removes it.
func TestPutKubernetesObject(t *testing.T) {
	ctx := context.Background()
	for _, s := range []storage.Store{
		inmem.NewWithOpts(inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true)),
		inmem.New(),
	} {
		for _, o := range kubeObjects() {
			if err := rules.PutKubernetesObject(ctx, s, o.obj); err != nil {
				t.Fatal(err)
			}
			p, _ := storage.ParsePath(o.path)
			if got, err := rules.KubernetesObjectPath(o.obj); err != nil || !got.Equal(p) {
				t.Errorf("path %v %v, want %s", got, err, o.path)
			}
			if _, err := storage.ReadOne(ctx, s, p); err != nil {
				t.Errorf("%s: %v", o.path, err)
			}
			if err := rules.DeleteKubernetesObject(ctx, s, o.obj); err != nil {
				t.Fatal(err)
			}
			if _, err := storage.ReadOne(ctx, s, p); !storage.IsNotFound(err) {
				t.Errorf("%s after the delete: %v", o.path, err)
			}
			if err := rules.DeleteKubernetesObject(ctx, s, o.obj); err != nil {
				t.Errorf("deleting a missing object: %v", err)
			}
		}
	}
	for _, bad := range []runtime.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "b"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "no-namespace"}},
		&corev1.Namespace{},
		nil,
	} {
		if _, err := rules.KubernetesObjectPath(bad); err == nil {
			t.Errorf("%#v: no error", bad)
		}
	}
}

// BenchmarkPutKubernetesObject is one informer event written to
// data.kubernetes: a pod replaced in a namespace of 1,000 pods, in the
// store the Evaluator makes.
func BenchmarkPutKubernetesObject(b *testing.B) {
	ctx := context.Background()
	s := inmem.NewWithOpts(inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	p := kubeObjects()[1].obj.(*corev1.Pod)
	for i := range 1000 {
		q := p.DeepCopy()
		q.Name = fmt.Sprintf("web-%d", i)
		if err := rules.PutKubernetesObject(ctx, s, q); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := rules.PutKubernetesObject(ctx, s, p); err != nil {
			b.Fatal(err)
		}
	}
}

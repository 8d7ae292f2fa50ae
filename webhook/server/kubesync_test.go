package server

import (
	"context"
	"testing"

	"github.com/go-logr/logr"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllertest"

	"github.com/podwall/podwall/webhook/config"
)

// TestKubeSync: data.kubernetes follows the informers' events while some
// rule uses rego, readiness waits for their initial lists, and the copy is
// dropped (late events ignored) once no rule does.
func TestKubeSync(t *testing.T) {
	ctx := context.Background()
	r, err := NewRegoRules(ctx, nil, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	nsInf, podInf := controllertest.NewFakeInformer(), controllertest.NewFakeInformer()
	svcInf, npInf := controllertest.NewFakeInformer(controllertest.Synced), controllertest.NewFakeInformer(controllertest.Synced)
	r.kube = &kubeSync{store: r.store, informers: []cache.Informer{nsInf, podInf, svcInf, npInf}, log: logr.Discard()}

	read := func(path ...string) (ast.Value, bool) {
		t.Helper()
		v, err := storage.ReadOne(ctx, r.store, storage.Path(path))
		if storage.IsNotFound(err) {
			return nil, false
		}
		if err != nil {
			t.Fatal(err)
		}
		return v.(ast.Value), true
	}

	goOnly := &config.AdmissionConfiguration{Rules: config.Rules{RequiredLabels: &config.RequiredLabelsRule{Labels: []config.RequiredLabel{{Key: "access"}}}}}
	goOnly.Default()
	if err := r.SetConfig(ctx, goOnly); err != nil {
		t.Fatal(err)
	}
	if r.kube.sess != nil || r.Evaluator() != nil || !r.Synced() {
		t.Fatalf("no rule on rego: session %v, evaluator %v, synced %v", r.kube.sess, r.Evaluator(), r.Synced())
	}

	onRego := goOnly.DeepCopy()
	onRego.Rules.RequiredLabels.Engine = config.EngineRego
	if err := r.SetConfig(ctx, onRego); err != nil {
		t.Fatal(err)
	}
	if r.Evaluator() == nil || r.kube.sess == nil {
		t.Fatal("the Rego side did not start")
	}
	if r.Synced() {
		t.Error("synced before the informers")
	}
	nsInf.Synced()
	podInf.Synced()
	if !r.Synced() {
		t.Error("not synced after the informers")
	}

	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web", ResourceVersion: "1", Labels: map[string]string{"app": "web"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}}
	podInf.Add(p)
	v, ok := read("kubernetes", "pods", "default", "web")
	if !ok {
		t.Fatal("pod not replicated")
	}
	o := v.(ast.Object)
	if o.Get(ast.StringTerm("kind")).String() != `"Pod"` || o.Get(ast.StringTerm("metadata")).Value.(ast.Object).Get(ast.StringTerm("managedFields")) != nil {
		t.Errorf("pod = %v", v)
	}
	p2 := p.DeepCopy()
	p2.ResourceVersion, p2.Labels["app"] = "2", "shop"
	podInf.Update(p, p2)
	if v, _ := read("kubernetes", "pods", "default", "web", "metadata", "labels", "app"); v.String() != `"shop"` {
		t.Errorf("after the update: %v", v)
	}
	podInf.Delete(p2)
	if _, ok := read("kubernetes", "pods", "default", "web"); ok {
		t.Error("pod still there after its deletion")
	}
	// A deletion the informer missed the end of.
	podInf.Add(p)
	r.kube.handler(r.kube.sess).OnDelete(toolscache.DeletedFinalStateUnknown{Key: "default/web", Obj: p})
	if _, ok := read("kubernetes", "pods", "default", "web"); ok {
		t.Error("pod still there after a tombstone")
	}
	nsInf.Add(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}})
	if _, ok := read("kubernetes", "namespaces", "shop"); !ok {
		t.Error("namespace not replicated")
	}

	// Back to go only: the copy goes, and late events are dropped.
	if err := r.SetConfig(ctx, goOnly); err != nil {
		t.Fatal(err)
	}
	if _, ok := read("kubernetes"); ok || r.kube.sess != nil {
		t.Error("data.kubernetes kept with no rule on rego")
	}
	podInf.Add(p) // the fake informer does not remove handlers
	if _, ok := read("kubernetes"); ok {
		t.Error("an event after the stop was written")
	}
}

package policylib_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podwall/podwall/policylib"
)

func TestFlowEnds(t *testing.T) {
	finished := tPod("b", "done", nil, "10.0.0.9")
	finished.Status.Phase = corev1.PodSucceeded
	bare := tNode("bare", "10.1.0.2")
	bare.Status.Addresses = nil
	e := tBuild(t, policylib.Snapshot{
		Pods:  []*corev1.Pod{tPod("b", "web", nil, "10.0.0.2"), tPod("a", "z", nil, "10.0.0.1"), tHostPod("a", "host", nil, "10.1.0.1"), finished},
		Nodes: []*corev1.Node{tNode("n2", "10.1.0.3"), bare, tNode("n1", "10.1.0.1")},
	})
	wantPods := []types.NamespacedName{{Namespace: "a", Name: "host"}, {Namespace: "a", Name: "z"}, {Namespace: "b", Name: "web"}}
	if got := e.Pods(); !slices.Equal(got, wantPods) {
		t.Errorf("Pods: got %v, want %v (sorted, finished pods left out)", got, wantPods)
	}
	if got, want := e.Nodes(), []string{"n1", "n2"}; !slices.Equal(got, want) {
		t.Errorf("Nodes: got %v, want %v (sorted, nodes without an address left out)", got, want)
	}
	for _, c := range []struct {
		ep        string
		unknown   bool
		noAddress bool
	}{
		{"b/web", false, false},
		{"b/done", true, false},
		{"b/nope", true, false},
		{"node/n1", false, false},
		{"node/bare", true, true},
		{"node/nope", true, false},
		{"192.0.2.1", false, false},
	} {
		err := e.CheckEndpoint(tEP(t, c.ep))
		if got := errors.Is(err, policylib.ErrUnknownEndpoint); got != c.unknown {
			t.Errorf("CheckEndpoint(%s) = %v: unknown %v, want %v", c.ep, err, got, c.unknown)
		}
		if got := errors.Is(err, policylib.ErrNodeWithoutAddress); got != c.noAddress {
			t.Errorf("CheckEndpoint(%s) = %v: without address %v, want %v", c.ep, err, got, c.noAddress)
		}
	}
}

// TestPoliciesAndServices: what the engine holds, sorted; an invalid policy
// is not among them.
func TestPoliciesAndServices(t *testing.T) {
	s := tBaseSnapshot()
	s.Policies = append(s.Policies, tPolicy("b", "p", tSel(), tIngress(nil)), tPolicy("a", "p", tSel(), tIngress(nil)),
		tPolicy("a", "bad", tSel(), tIngress(nil, tPort("", 70000))))
	s.Services = append(s.Services, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "s"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "s"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}})
	e, err := policylib.Build(s)
	if err == nil {
		t.Fatal("the invalid policy was accepted")
	}
	got := e.Policies()
	if !slices.IsSortedFunc(got, func(a, b types.NamespacedName) int { return strings.Compare(a.String(), b.String()) }) ||
		!slices.Contains(got, types.NamespacedName{Namespace: "a", Name: "p"}) || slices.Contains(got, types.NamespacedName{Namespace: "a", Name: "bad"}) {
		t.Errorf("Policies: %v", got)
	}
	if got, want := e.Services(), []types.NamespacedName{{Namespace: "a", Name: "s"}, {Namespace: "b", Name: "s"}}; !slices.Equal(got, want) {
		t.Errorf("Services: %v, want %v", got, want)
	}
}

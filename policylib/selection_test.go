package policylib

import (
	"fmt"
	"net/netip"
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// These white-box tests pin the sharing that makes decisions cheap: pods
// selected by the same policies share one check list, repeated checks are
// left out, and nothing is kept once the policies that needed it are gone.

func selTestPod(name, app string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{"app": app}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: fmt.Sprintf("10.0.0.%d", len(name))},
	}
}

// selTestPolicy admits tier=web pods and 192.168.0.0/16 on TCP 80 to app
// pods: every copy repeats the same peers and ports.
func selTestPolicy(name, app string) *networkingv1.NetworkPolicy {
	port := intstr.FromInt32(80)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{
					{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "web"}}},
					{IPBlock: &networkingv1.IPBlock{CIDR: "192.168.0.0/16"}},
				},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &port}},
			}},
		},
	}
}

func TestSelectionsAreSharedAndDeduplicated(t *testing.T) {
	e := NewEngine()
	for _, np := range []*networkingv1.NetworkPolicy{selTestPolicy("a", "web"), selTestPolicy("b", "web"), selTestPolicy("c", "db")} {
		if err := e.SetPolicy(np); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []*corev1.Pod{selTestPod("w1", "web"), selTestPod("w22", "web"), selTestPod("d333", "db"), selTestPod("o4444", "other")} {
		if err := e.SetPod(p); err != nil {
			t.Fatal(err)
		}
	}
	pod := func(name string) *pod { return e.lookupPod("default", name) }

	w1, w2, d := pod("w1"), pod("w22"), pod("d333")
	if w1.sel[Ingress] == nil || w1.sel[Ingress] != w2.sel[Ingress] {
		t.Fatalf("pods selected by the same policies do not share a selection: %p %p", w1.sel[Ingress], w2.sel[Ingress])
	}
	if w1.sel[Ingress] == d.sel[Ingress] {
		t.Fatal("pods selected by different policies share a selection")
	}
	if pod("o4444").sel != [2]*selection{} || w1.sel[Egress] != nil {
		t.Fatal("a direction no policy isolates has a selection")
	}
	// Policies a and b repeat each other: b's two checks are left out.
	if got := len(w1.sel[Ingress].checks); got != 2 {
		t.Errorf("web pods' checks: got %d, want 2 (b's repeat a's)", got)
	}
	if got := len(w1.sel[Ingress].policies); got != 2 {
		t.Errorf("web pods' policies: got %d, want 2", got)
	}
	if got := len(e.portLists.m); got != 1 {
		t.Errorf("interned port lists: got %d, want 1", got)
	}
	if got := len(e.addrSets.m); got != 1 {
		t.Errorf("interned address sets: got %d, want 1", got)
	}
	// The repeated checks still name the first policy's rule.
	v := e.verdict(Ingress, w1, endpoint{addr: netip.MustParseAddr("192.168.3.4")}, w1, TCP, 80)
	if v.Outcome != AllowedByRule || v.Rule.Policy.Name != "a" || v.Rule.Peer != 1 {
		t.Errorf("verdict: got %+v, want allowed by a's peer 1", v)
	}

	// Replacing a policy moves its pods to a new selection; removing
	// everything leaves nothing behind.
	if err := e.SetPolicy(selTestPolicy("b", "web")); err != nil {
		t.Fatal(err)
	}
	if w1.sel[Ingress] != w2.sel[Ingress] || len(w1.sel[Ingress].policies) != 2 {
		t.Fatal("after replacing b, the web pods do not share a two-policy selection")
	}
	if got := len(e.selections); got != 2 {
		t.Errorf("selections after replacing b: got %d, want 2", got)
	}
	for _, name := range []string{"a", "b", "c"} {
		e.DeletePolicy("default", name)
	}
	if len(e.selections) != 0 || len(e.portLists.m) != 0 || len(e.addrSets.m) != 0 {
		t.Errorf("left behind: %d selections, %d port lists, %d address sets", len(e.selections), len(e.portLists.m), len(e.addrSets.m))
	}
	if w1.sel != [2]*selection{} {
		t.Error("a pod keeps a selection after its policies are gone")
	}
	if err := e.SetPolicy(selTestPolicy("a", "web")); err != nil {
		t.Fatal(err)
	}
	e.DeletePod("default", "w1")
	e.DeletePod("default", "w22")
	if len(e.selections) != 0 {
		t.Errorf("%d selections outlive their pods", len(e.selections))
	}
}

func TestPodSize(t *testing.T) {
	if got := unsafe.Sizeof(pod{}); got != podSize {
		t.Errorf("pod is %d bytes, want %d (see podSize): adjust its padding", got, podSize)
	}
	if got := unsafe.Offsetof(pod{}.key); got > 64 {
		t.Errorf("the fields a decision reads end at byte %d, past the first cache line", got)
	}
}

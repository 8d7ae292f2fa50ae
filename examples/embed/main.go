// Command embed shows podwall's policy engine used as a library, the way
// another Go program would: it builds a tiny cluster from the upstream API
// types, decides two flows and prints why each is allowed or denied.
package main

import (
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podwall/podwall/policylib"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}

func pod(name, ip string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: labels},
		Status:     corev1.PodStatus{PodIP: ip},
	}
}

func run() error {
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(5432)
	// Only the api pods may reach the database, on TCP 5432.
	dbIngress := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-ingress"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{
					PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
				}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
			}},
		},
	}
	engine, err := policylib.Build(policylib.Snapshot{
		Namespaces: []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}},
		Pods: []*corev1.Pod{
			pod("api", "10.0.0.10", map[string]string{"app": "api"}),
			pod("web", "10.0.0.20", map[string]string{"app": "web"}),
			pod("db", "10.0.0.30", map[string]string{"app": "db"}),
		},
		Policies: []*networkingv1.NetworkPolicy{dbIngress},
	})
	if err != nil {
		return err // a *policylib.PolicyError names the policy and the field paths
	}

	fmt.Print(policylib.DescribePolicy(dbIngress))
	for _, from := range []string{"shop/api", "shop/web"} {
		src, err := policylib.ParseEndpoint(from)
		if err != nil {
			return err
		}
		flow := policylib.Flow{From: src, To: policylib.PodEndpoint("shop", "db"), Protocol: policylib.TCP, Port: 5432}
		// Decide is the allocation-free hot path; Explain says why.
		d, err := engine.Decide(flow)
		if err != nil {
			return err
		}
		x, err := engine.Explain(flow)
		if err != nil {
			return err
		}
		fmt.Printf("\nallowed=%t\n%s", d.Allowed, x)
	}
	return nil
}

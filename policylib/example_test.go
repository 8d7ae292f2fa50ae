package policylib_test

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podwall/podwall/policylib"
)

// exampleCluster is a web pod, a client with access and one without, and a
// policy admitting access=true pods to the web pod on TCP 80.
func exampleCluster() policylib.Snapshot {
	pod := func(name, ip string, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
				{Name: "http", ContainerPort: 80},
			}}}},
			Status: corev1.PodStatus{PodIP: ip},
		}
	}
	tcp := corev1.ProtocolTCP
	return policylib.Snapshot{
		Pods: []*corev1.Pod{
			pod("web", "10.0.0.10", map[string]string{"app": "web"}),
			pod("client", "10.0.0.20", map[string]string{"access": "true"}),
			pod("stranger", "10.0.0.30", nil),
		},
		Services: []*corev1.Service{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": "web"},
				Ports:    []corev1.ServicePort{{Port: 8080, TargetPort: intstr.FromString("http")}},
			},
		}},
		Policies: []*networkingv1.NetworkPolicy{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-access"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"access": "true"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &intstr.IntOrString{IntVal: 80}}},
				}},
			},
		}},
	}
}

func ExampleEngine_Decide() {
	engine, err := policylib.Build(exampleCluster())
	if err != nil {
		panic(err)
	}
	for _, from := range []string{"client", "stranger"} {
		d, err := engine.Decide(policylib.Flow{
			From:     policylib.PodEndpoint("shop", from),
			To:       policylib.PodEndpoint("shop", "web"),
			Protocol: policylib.TCP,
			Port:     80,
		})
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s: allowed=%v, ingress %v", from, d.Allowed, d.Ingress.Outcome)
		if d.Ingress.Outcome == policylib.AllowedByRule {
			fmt.Printf(" by %v", d.Ingress.Rule)
		}
		fmt.Println()
	}
	// Output:
	// client: allowed=true, ingress allowed by shop/web-access spec.ingress[0].from[0].ports[0]
	// stranger: allowed=false, ingress denied
}

func ExampleEngine_Explain() {
	engine, _ := policylib.Build(exampleCluster())
	x, err := engine.Explain(policylib.Flow{
		From: policylib.PodEndpoint("shop", "client"), To: policylib.PodEndpoint("shop", "web"), Protocol: policylib.ICMP,
	})
	if err != nil {
		panic(err)
	}
	fmt.Print(x)
	// Output:
	// shop/client -> shop/web ICMP: DENIED
	//   egress of shop/client: allowed: no NetworkPolicy selects it for egress
	//   ingress of shop/web: denied: selected for ingress by shop/web-access, and no rule of theirs allows this flow
	//   note: ICMP is not a NetworkPolicy protocol: only a rule without ports allows it
}

// A Service is translated to its pods and target port before NetworkPolicy
// judges the flow: port 8080 of the Service is port 80 ("http") of the pod.
func ExampleEngine_ResolveService() {
	engine, _ := policylib.Build(exampleCluster())
	flows, err := engine.ResolveService(policylib.PodEndpoint("shop", "client"), "shop", "web", 8080, policylib.TCP)
	if err != nil {
		panic(err)
	}
	for _, sf := range flows {
		d, _ := engine.Decide(sf.Flow)
		fmt.Println(sf.Flow, d.Allowed)
		fmt.Println(sf.Note)
	}
	// Output:
	// shop/client -> shop/web TCP/80 true
	// Service shop/web port 8080 is translated to its pods' target port (pod port 80)
}

func ExampleEngine_Matrix() {
	engine, _ := policylib.Build(exampleCluster())
	m, err := engine.Matrix(nil, []policylib.PortProtocol{{Port: 80, Protocol: policylib.TCP}})
	if err != nil {
		panic(err)
	}
	for i, from := range m.Pods {
		fmt.Printf("%-14s", from)
		for j := range m.Pods {
			if m.Allowed(i, j, 0) {
				fmt.Print(" .")
			} else {
				fmt.Print(" X")
			}
		}
		fmt.Println()
	}
	// Output:
	// shop/client    . . .
	// shop/stranger  . . X
	// shop/web       . . X
}

func ExampleLint() {
	s := exampleCluster()
	// The classic mistake: the Service's port instead of the pod's.
	s.Policies[0].Spec.Ingress[0].Ports[0].Port = &intstr.IntOrString{IntVal: 8080}
	for _, f := range policylib.Lint(s) {
		fmt.Println(f.Severity, f.Code, f.Field)
	}
	// Output:
	// warning service-port-not-target spec.ingress[0].ports[0].port
}

// A program that keeps an engine up to date (from informers, say) lints
// what it holds without assembling a snapshot.
func ExampleEngine_Lint() {
	e, err := policylib.Build(exampleCluster())
	if err != nil {
		panic(err)
	}
	if err := e.SetPolicy(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "api-only"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{}},
		},
	}); err != nil {
		panic(err)
	}
	for _, f := range e.Lint() {
		fmt.Println(f.Severity, f.Code, f.Policy, f.Field)
	}
	// Output:
	// warning selects-no-pods default/api-only spec.podSelector
}

func ExampleDescribePolicy() {
	fmt.Print(policylib.DescribePolicy(exampleCluster().Policies[0]))
	// Output:
	// NetworkPolicy shop/web-access selects pods with app=web in namespace shop.
	//   Ingress: isolated; allowed only:
	//     rule 0: from pods with access=true in namespace shop on TCP 80
}

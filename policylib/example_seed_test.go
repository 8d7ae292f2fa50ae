package policylib_test

import (
	"fmt"
	"net/netip"

	"github.com/podwall/podwall/manifest"
	"github.com/podwall/podwall/policylib"
)

// The seed scenario: three httpd pods behind a NodePort Service, a busybox
// client with and one without access: "true", and a policy that admits only
// access: "true" pods on TCP 80, later widened with the node network.
func Example_seedScenario() {
	cluster, err := manifest.Load("../examples/seed/cluster")
	if err != nil {
		panic(err)
	}
	pods, _ := cluster.AllPods()
	engine, err := policylib.Build(policylib.Snapshot{
		Nodes: cluster.Nodes, Pods: pods, Services: cluster.Services,
	})
	if err != nil {
		panic(err)
	}
	busybox := policylib.PodEndpoint("default", "busybox")
	access := policylib.PodEndpoint("default", "busybox-access")
	outside := policylib.AddrEndpoint(netip.MustParseAddr("203.0.113.7"))
	httpd := policylib.PodEndpoint("default", "httpd-1")

	show := func(stage string, from policylib.Endpoint, to policylib.Endpoint, proto policylib.Protocol, port int32) {
		d, err := engine.Decide(policylib.Flow{From: from, To: to, Protocol: proto, Port: port})
		if err != nil {
			panic(err)
		}
		verdict := "denied"
		if d.Allowed {
			verdict = "allowed"
		}
		fmt.Printf("%s %-22s %s\n", stage, policylib.Flow{From: from, To: to, Protocol: proto, Port: port}, verdict)
	}
	// A browser outside the cluster reaches NodePort 31000; the node
	// source-NATs it, so the pods see the node's address.
	nodePort, err := engine.ResolveNodePort(outside, "k8s-node1", 31000, policylib.TCP)
	if err != nil {
		panic(err)
	}
	stage := func(name string) {
		show(name, busybox, httpd, policylib.TCP, 80)
		show(name, busybox, httpd, policylib.ICMP, 0)
		show(name, access, httpd, policylib.TCP, 80)
		show(name, access, httpd, policylib.ICMP, 0)
		f := nodePort[0].Flow
		show(name, f.From, f.To, f.Protocol, f.Port)
	}

	stage("0")
	for i, file := range []string{"networkpolicy.yaml", "networkpolicy-ipblock.yaml"} {
		policies, err := manifest.Load("../examples/seed/original/" + file)
		if err != nil {
			panic(err)
		}
		for _, np := range policies.NetworkPolicies {
			if err := engine.SetPolicy(np); err != nil {
				panic(err)
			}
		}
		stage(fmt.Sprint(i + 1))
	}
	// Output:
	// 0 default/busybox -> default/httpd-1 TCP/80 allowed
	// 0 default/busybox -> default/httpd-1 ICMP allowed
	// 0 default/busybox-access -> default/httpd-1 TCP/80 allowed
	// 0 default/busybox-access -> default/httpd-1 ICMP allowed
	// 0 node/k8s-node1 -> default/httpd-1 TCP/80 allowed
	// 1 default/busybox -> default/httpd-1 TCP/80 denied
	// 1 default/busybox -> default/httpd-1 ICMP denied
	// 1 default/busybox-access -> default/httpd-1 TCP/80 allowed
	// 1 default/busybox-access -> default/httpd-1 ICMP denied
	// 1 node/k8s-node1 -> default/httpd-1 TCP/80 denied
	// 2 default/busybox -> default/httpd-1 TCP/80 denied
	// 2 default/busybox -> default/httpd-1 ICMP denied
	// 2 default/busybox-access -> default/httpd-1 TCP/80 allowed
	// 2 default/busybox-access -> default/httpd-1 ICMP denied
	// 2 node/k8s-node1 -> default/httpd-1 TCP/80 allowed
}

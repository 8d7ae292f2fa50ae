package enforcer_test

import (
	"fmt"
	"net/netip"

	"k8s.io/apimachinery/pkg/types"

	"github.com/podwall/podwall/enforcer"
	"github.com/podwall/podwall/manifest"
	"github.com/podwall/podwall/policylib"
)

// The seed scenario's stage 1 on node k8s-node2: only pods labelled
// access: "true" reach the httpd pods, on TCP 80. The node runs httpd-1,
// httpd-3 and busybox-access; busybox-access is not isolated, so only the
// httpd pods get chains, with busybox-access (10.244.2.21) as their one
// peer on TCP 80.
func ExampleRuleset_Render() {
	objs, err := manifest.Load("../examples/seed/cluster", "../examples/seed/original/networkpolicy.yaml")
	if err != nil {
		panic(err)
	}
	pods, err := objs.AllPods()
	if err != nil {
		panic(err)
	}
	engine, err := policylib.Build(policylib.Snapshot{Nodes: objs.Nodes, Pods: pods, Policies: objs.NetworkPolicies})
	if err != nil {
		panic(err)
	}
	var local []types.NamespacedName
	for _, p := range pods {
		if p.Spec.NodeName == "k8s-node2" {
			local = append(local, types.NamespacedName{Namespace: p.Namespace, Name: p.Name})
		}
	}
	rs, err := enforcer.Compile(engine, local, enforcer.Options{
		NodeAddrs: []netip.Addr{netip.MustParseAddr("192.168.2.102")},
	})
	if err != nil {
		panic(err)
	}
	fmt.Print(rs.Render())
	// Output:
	// # podwall: 3 local pods, 2 with rules; host to local pods: allowed.
	// # node addresses: 192.168.2.102
	// table inet podwall {}
	// delete table inet podwall
	// table inet podwall {
	// 	# default/httpd-1 ingress, isolated by default/access-httpd
	// 	set ingress/default/httpd-1/any4 {
	// 		type ipv4_addr
	// 		flags interval
	// 	}
	// 	set ingress/default/httpd-1/tcp/80/peers4 {
	// 		type ipv4_addr
	// 		flags interval
	// 		elements = {
	// 			10.244.2.21,
	// 		}
	// 	}
	// 	chain ingress/default/httpd-1/tcp/80 {
	// 		ip saddr @ingress/default/httpd-1/tcp/80/peers4 return
	// 		drop
	// 	}
	// 	map ingress/default/httpd-1/ports {
	// 		type inet_proto . inet_service : verdict
	// 		flags interval
	// 		elements = {
	// 			tcp . 80 : goto ingress/default/httpd-1/tcp/80,
	// 		}
	// 	}
	// 	chain ingress/default/httpd-1 {
	// 		ip saddr @ingress/default/httpd-1/any4 return
	// 		meta l4proto . th dport vmap @ingress/default/httpd-1/ports
	// 		drop
	// 	}
	//
	// 	# default/httpd-3 ingress, isolated by default/access-httpd
	// 	set ingress/default/httpd-3/any4 {
	// 		type ipv4_addr
	// 		flags interval
	// 	}
	// 	set ingress/default/httpd-3/tcp/80/peers4 {
	// 		type ipv4_addr
	// 		flags interval
	// 		elements = {
	// 			10.244.2.21,
	// 		}
	// 	}
	// 	chain ingress/default/httpd-3/tcp/80 {
	// 		ip saddr @ingress/default/httpd-3/tcp/80/peers4 return
	// 		drop
	// 	}
	// 	map ingress/default/httpd-3/ports {
	// 		type inet_proto . inet_service : verdict
	// 		flags interval
	// 		elements = {
	// 			tcp . 80 : goto ingress/default/httpd-3/tcp/80,
	// 		}
	// 	}
	// 	chain ingress/default/httpd-3 {
	// 		ip saddr @ingress/default/httpd-3/any4 return
	// 		meta l4proto . th dport vmap @ingress/default/httpd-3/ports
	// 		drop
	// 	}
	//
	// 	map ingress4 {
	// 		type ipv4_addr : verdict
	// 		elements = {
	// 			10.244.2.11 : jump ingress/default/httpd-1,
	// 			10.244.2.13 : jump ingress/default/httpd-3,
	// 		}
	// 	}
	//
	// 	map ingress6 {
	// 		type ipv6_addr : verdict
	// 	}
	//
	// 	map egress4 {
	// 		type ipv4_addr : verdict
	// 	}
	//
	// 	map egress6 {
	// 		type ipv6_addr : verdict
	// 	}
	//
	// 	chain forward {
	// 		type filter hook forward priority filter; policy accept;
	// 		ct state established,related accept
	// 		icmpv6 type 133-137 accept
	// 		ct state invalid drop
	// 		ip saddr vmap @egress4
	// 		ip6 saddr vmap @egress6
	// 		ip daddr vmap @ingress4
	// 		ip6 daddr vmap @ingress6
	// 	}
	//
	// 	chain input {
	// 		type filter hook input priority filter; policy accept;
	// 		ct state established,related accept
	// 		icmpv6 type 133-137 accept
	// 		ip saddr vmap @egress4
	// 		ip6 saddr vmap @egress6
	// 	}
	// }
}

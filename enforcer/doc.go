// Package enforcer enforces NetworkPolicy on a node's pods with nftables,
// from policylib's view of them.
//
// It works in three steps, each usable alone:
//
//   - [Compile] turns the engine's [policylib.Engine.PodRules] of the local
//     pods into a [Ruleset]: per pod and isolated direction, the peers
//     allowed on every port (ICMP included) and the peers allowed per
//     protocol and port range, made disjoint so that nftables interval sets
//     take them. It is pure and fast, and [Ruleset.Allowed] answers what
//     the kernel will do with a flow, which tests compare with
//     [policylib.Engine.Decide]. A [Compiler] does the same from one
//     change to the next, asking the engine again only for the pods the
//     caller marks stale, which is most of the cost.
//   - [Ruleset.Render] prints it as an nft -f script (dry runs, reviews,
//     golden tests).
//   - An [Applier] installs it in one nftables transaction, later updates
//     only what changed, and deletes the conntrack entries of flows a
//     change denies, reading only those the change can have denied.
//
// # The table
//
// Everything lives in one table of family inet (default "podwall") that
// the Applier owns. Per packet the work does not depend on the number of
// pods or policies: a base chain on the forward hook (bridged and routed
// pod traffic; bridged traffic reaches it only with
// net.bridge.bridge-nf-call-iptables=1, and -ip6tables=1 for IPv6) accepts
// established and related traffic, drops invalid packets, lets IPv6
// neighbour discovery (ICMPv6 types 133-137, whatever the policies say, as
// Calico does) through, then looks the source address up in a verdict map
// (egress4 or egress6) and jumps to the source pod's egress chain, then
// looks the destination up (ingress4, ingress6) and jumps to its ingress
// chain. The input hook does the egress half for traffic from
// pods to the node; the output hook the ingress half for traffic from the
// node, unless [Options.AllowHostToLocalPods] (the default) lets the host
// reach its pods, as kubelet probes need.
//
// A per-pod chain holds, per address family of the pod, a lookup of the
// peer address in an interval set of the peers allowed on any port; then a
// lookup of (protocol . destination port) in a map of the pod's disjoint
// port ranges, which goes to the chain of the packet's range, holding per
// family an interval set of the peers allowed there. A match returns to the
// base chain (the port chains are entered by goto), which goes on to the
// other end's check: an allow is never accept, or the destination's ingress
// would never run. No match drops, in either chain.
//
// The layout is chosen for what a small change costs the kernel: peers live
// in single-field interval sets (rbtrees), where adding or deleting a range
// costs about the same whatever the set's size, and the only concatenated
// interval sets (pipapo, which copies itself on every change) are the
// per-pod port maps, which hold one element per port range and change only
// when a pod's port ranges do.
//
// # Applying
//
// Every Apply is one netlink batch, so the kernel never holds a mix of two
// rulesets or none. The first Apply replaces the table whole (create if
// missing, delete, declare), which adopts a table left by a previous run;
// later ones diff against the last applied Ruleset, pod by pod, and send
// only the set elements, chains and map entries that differ. The Applier
// encodes nf_tables messages itself (expressions through
// github.com/google/nftables/expr) into one buffer, splits set elements
// over messages below netlink's 64 KiB attribute limit, sends the batch in
// one sendmsg and asks only for the last message to be acknowledged: the
// kernel reports every failed message anyway, so the answer is read in one
// go and its size does not grow with the batch.
//
// # Limits
//
// Traffic that reaches a local pod through a NodePort or a Service is judged
// after DNAT with its original source: a client outside the cluster is seen
// as itself on the node running the pod (source NAT happens later, in
// postrouting), and as the first node's address when another node
// forwarded it. Address conflicts (a stale pod whose address a new pod
// reuses) dispatch the address to one pod and are listed in
// [Ruleset.Conflicts]. The core logs nothing: Apply returns [Stats] and
// errors for the caller to report.
package enforcer

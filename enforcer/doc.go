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
//     [policylib.Engine.Decide].
//   - [Ruleset.Render] prints it as an nft -f script (dry runs, reviews,
//     golden tests).
//   - An [Applier] installs it in one nftables transaction, later updates
//     only what changed, and deletes the conntrack entries of flows a
//     change denies.
//
// # The table
//
// Everything lives in one table of family inet (default "podwall") that
// the Applier owns. Per packet the work does not depend on the number of
// pods or policies: a base chain on the forward hook (bridged and routed
// pod traffic; bridged traffic reaches it only with
// net.bridge.bridge-nf-call-iptables=1, and -ip6tables=1 for IPv6) accepts
// established and related traffic, drops invalid packets, lets IPv6
// neighbour discovery through, then looks the source address up in a
// verdict map (egress4 or egress6) and jumps to the source pod's egress
// chain, then looks the destination up (ingress4, ingress6) and jumps to
// its ingress chain. The input hook does the egress half for traffic from
// pods to the node; the output hook the ingress half for traffic from the
// node, unless [Options.AllowHostToLocalPods] (the default) lets the host
// reach its pods, as kubelet probes need.
//
// A per-pod chain holds, per address family of the pod, two lookups: the
// peer address in an interval set of the peers allowed on any port, and
// (peer . protocol . destination port) in a concatenated interval set of
// the rest. A match returns to the base chain, which goes on to the other
// end's check: an allow is never accept, or the destination's ingress would
// never run. No match falls through to drop.
//
// # Applying
//
// Every Apply is one netlink batch, so the kernel never holds a mix of two
// rulesets or none. The first Apply replaces the table whole (create if
// missing, delete, declare), which adopts a table left by a previous run;
// later ones diff against the last applied Ruleset. The package uses
// github.com/google/nftables v0.3.0, which sends a batch in one sendmsg and
// reads one answer per message (and per rule, which it asks to be echoed):
// the Applier forces the socket buffers to fit and splits set elements
// over messages below netlink's 64 KiB attribute limit.
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

// Package addrset implements sets of IP addresses as sorted, merged,
// non-overlapping ranges, the form NetworkPolicy ipBlocks and nftables
// interval sets need.
//
// A [Set] holds IPv4 and IPv6 addresses together. Its representation is
// canonical (ranges sorted, never overlapping, never adjacent), so equal sets
// have identical ranges and an nftables enforcer can emit [Set.Ranges] as
// interval elements without further merging.
//
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) mean the IPv4 address a.b.c.d
// everywhere, because dual-stack sockets and some APIs report IPv4 peers in
// that form. IPv6 ranges therefore never hold the mapped block: "::/0" is
// every IPv6 address except ::ffff:0:0/96 and matches no IPv4 address, as in
// Kubernetes.
//
// [IPBlock] applies the Kubernetes networking/v1 IPBlock rules (cidr minus
// every except) and reports invalid input as [*CIDRError] or [*ExceptError]
// so callers can attach field paths. It never returns a partial set.
package addrset

package enforcer

import "github.com/podwall/podwall/policylib/addrset"

// buildBuf keeps BuildBatch's storage between calls, as an Applier does.
var buildBuf []byte

// BuildBatch builds, without sending, the batch an Applier that last
// applied prev (nil for none) would send to apply rs, and returns its
// messages and bytes: the user-space half of Apply, for benchmarks.
func BuildBatch(prev, rs *Ruleset) (messages, bytes int) {
	b := newBuilder(rs.Table, buildBuf)
	if prev == nil {
		b.full(rs, "")
	} else {
		b.incremental(prev, rs)
	}
	b.end()
	buildBuf = b.buf.b[:0]
	return len(b.msgs), len(b.buf.b)
}

// Covers reports whether n permits every flow o permits.
func Covers(n, o *Rules) bool { return covers(n, o) }

// LostPeers returns the peers with which o permits some flow n does not
// (or more).
func LostPeers(o, n *Rules) addrset.Set { return lostPeers(o, n) }

// FilterConntrackAlways makes a's conntrack cleanup use the kernel's dump
// filter however few entries the namespace holds.
func FilterConntrackAlways(a *Applier) { a.ct.alwaysFilter = true }

package enforcer

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

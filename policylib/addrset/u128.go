package addrset

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// uint128 holds an address as an integer so prefix arithmetic is plain bit
// twiddling. IPv4 addresses live in the low 32 bits.
type uint128 struct{ hi, lo uint64 }

func u128(a netip.Addr) uint128 {
	if a.Is4() {
		b := a.As4()
		return uint128{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return uint128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (u uint128) addr(is4 bool) netip.Addr {
	if is4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(u.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], u.hi)
	binary.BigEndian.PutUint64(b[8:], u.lo)
	return netip.AddrFrom16(b)
}

func (u uint128) sub(v uint128) uint128 {
	lo, borrow := bits.Sub64(u.lo, v.lo, 0)
	hi, _ := bits.Sub64(u.hi, v.hi, borrow)
	return uint128{hi, lo}
}

func (u uint128) or(v uint128) uint128 { return uint128{u.hi | v.hi, u.lo | v.lo} }

func (u uint128) bitLen() int {
	if u.hi != 0 {
		return 64 + bits.Len64(u.hi)
	}
	return bits.Len64(u.lo)
}

// trailingZeros is capped at width so that the zero address counts as
// aligned to the whole address space rather than to 128 bits.
func (u uint128) trailingZeros(width int) int {
	var n int
	switch {
	case u.lo != 0:
		n = bits.TrailingZeros64(u.lo)
	case u.hi != 0:
		n = 64 + bits.TrailingZeros64(u.hi)
	default:
		n = 128
	}
	return min(n, width)
}

// lowMask returns 2^n - 1 for 0 <= n <= 128.
func lowMask(n int) uint128 {
	switch {
	case n <= 0:
		return uint128{}
	case n < 64:
		return uint128{lo: 1<<uint(n) - 1}
	case n < 128:
		return uint128{hi: 1<<uint(n-64) - 1, lo: ^uint64(0)}
	default:
		return uint128{^uint64(0), ^uint64(0)}
	}
}

// firstBlock returns the size exponent k of the largest aligned block
// [from, from+2^k-1] that starts at from and does not pass to. Every range
// splits greedily into such blocks, and the greedy split is the minimal
// prefix cover.
func firstBlock(from, to netip.Addr) (k int, last netip.Addr) {
	width := from.BitLen()
	f, t := u128(from), u128(to)
	span := t.sub(f)
	k = span.bitLen()
	if span != lowMask(k) {
		k-- // span+1 is not a power of two, so the block must be smaller.
	}
	k = min(k, f.trailingZeros(width))
	return k, f.or(lowMask(k)).addr(from.Is4())
}

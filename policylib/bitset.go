package policylib

import "math/bits"

// bitset is a growable set of small non-negative integers (pod slots). Reads
// beyond its length are false, so a set never needs to grow just to be asked.
type bitset []uint64

func (b bitset) has(i int32) bool {
	w := int(i >> 6)
	return w < len(b) && b[w]&(1<<(uint(i)&63)) != 0
}

func (b *bitset) set(i int32) {
	w := int(i >> 6)
	for w >= len(*b) {
		*b = append(*b, 0)
	}
	(*b)[w] |= 1 << (uint(i) & 63)
}

func (b bitset) clear(i int32) {
	w := int(i >> 6)
	if w < len(b) {
		b[w] &^= 1 << (uint(i) & 63)
	}
}

// forEach calls fn for every member in increasing order.
func (b bitset) forEach(fn func(int32)) {
	for w, word := range b {
		for word != 0 {
			t := bits.TrailingZeros64(word)
			fn(int32(w<<6 + t))
			word &= word - 1
		}
	}
}

func (b bitset) count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

package policylib

import (
	"math/rand/v2"
	"testing"
)

// TestPodIndex checks the table against a map through random adds and
// removes, with hashes drawn from a few values so that probe runs collide,
// wrap around the end of the table and are shifted back on removal.
func TestPodIndex(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 7))
		var x podIndex
		in := map[*pod]uint64{} // pod -> hash
		var pods []*pod
		for step := range 2000 {
			if len(pods) == 0 || rng.IntN(3) > 0 {
				// Hashes near the top wrap around the table's end.
				p := &pod{nameCheck: rng.Uint64()}
				h := []uint64{0, 1, 5, 1<<64 - 1, 1<<64 - 2, rng.Uint64()}[rng.IntN(6)]
				x.add(h, p)
				in[p] = h
				pods = append(pods, p)
			} else {
				i := rng.IntN(len(pods))
				p := pods[i]
				pods[i] = pods[len(pods)-1]
				pods = pods[:len(pods)-1]
				x.remove(in[p], p)
				delete(in, p)
			}
			if x.n != len(in) {
				t.Fatalf("seed %d step %d: n = %d, want %d", seed, step, x.n, len(in))
			}
			if step%50 == 0 || len(in) < 20 {
				for p, h := range in {
					if got := x.get(h, p.nameCheck); got != p {
						t.Fatalf("seed %d step %d: get(%#x) = %p, want %p", seed, step, h, got, p)
					}
				}
				if got := x.get(1, 12345); got != nil && got.nameCheck != 12345 {
					t.Fatalf("seed %d step %d: get found a pod with another check", seed, step)
				}
			}
		}
		for p, h := range in {
			x.remove(h, p)
		}
		for i, s := range x.slots {
			if s.pod != nil {
				t.Fatalf("seed %d: slot %d still holds a pod after every remove", seed, i)
			}
		}
	}
}

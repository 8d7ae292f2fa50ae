package policylib

// podIndex finds pods by the hash of their names: an open-addressing table
// with linear probing in one flat array. A decision by name starts with two
// lookups here; a Go map of this size reaches its slot through a directory,
// a table and a group's control word, several dependent cache misses, where
// this takes one (the slot) before the pod itself. Pods whose hashes
// collide are all kept, told apart by their second hash (pod.nameCheck).
type podIndex struct {
	slots []podSlot // len is a power of two, at most half full
	n     int
}

type podSlot struct {
	hash uint64
	pod  *pod // nil: empty
}

// get returns the pod stored under hash whose nameCheck is check, or nil.
func (x *podIndex) get(hash, check uint64) *pod {
	if len(x.slots) == 0 {
		return nil
	}
	mask := uint64(len(x.slots) - 1)
	for i := hash & mask; ; i = (i + 1) & mask {
		s := &x.slots[i]
		if s.pod == nil {
			return nil
		}
		if s.hash == hash && s.pod.nameCheck == check {
			return s.pod
		}
	}
}

func (x *podIndex) add(hash uint64, p *pod) {
	if 2*(x.n+1) > len(x.slots) {
		x.grow()
	}
	x.put(hash, p)
	x.n++
}

func (x *podIndex) put(hash uint64, p *pod) {
	mask := uint64(len(x.slots) - 1)
	i := hash & mask
	for x.slots[i].pod != nil {
		i = (i + 1) & mask
	}
	x.slots[i] = podSlot{hash, p}
}

func (x *podIndex) grow() {
	old := x.slots
	x.slots = make([]podSlot, max(16, 2*len(old)))
	for _, s := range old {
		if s.pod != nil {
			x.put(s.hash, s.pod)
		}
	}
}

// remove deletes p, stored under hash, shifting back the entries after it
// that would otherwise be cut off from their home slot (no tombstones, so
// lookups never slow down with churn).
func (x *podIndex) remove(hash uint64, p *pod) {
	if len(x.slots) == 0 {
		return
	}
	mask := uint64(len(x.slots) - 1)
	i := hash & mask
	for x.slots[i].pod != p {
		if x.slots[i].pod == nil {
			return // not stored
		}
		i = (i + 1) & mask
	}
	x.slots[i] = podSlot{}
	x.n--
	for j := (i + 1) & mask; x.slots[j].pod != nil; j = (j + 1) & mask {
		home := x.slots[j].hash & mask
		// Move j back into the hole at i unless its home lies cyclically
		// in (i, j], where a lookup starting from home still reaches it.
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			x.slots[i], x.slots[j] = x.slots[j], podSlot{}
			i = j
		}
	}
}

package rules

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Most of what the admission rules compute on a request depends on the
// configuration alone: which families are on, their kinds, namespaces and
// labels, their enforcement actions. OPA caches rule values within one
// query only, so every request used to derive all of that again, and with
// OPA's per-step cost that was most of an evaluation. The Evaluator keeps
// those values across queries instead:
//
//   - a rule is data-only when neither it nor anything it may evaluate
//     reads input, calls a non-deterministic built-in (time, randomness,
//     I/O, print) or uses `with`; a value is shareable when it is a
//     data-only rule's (a complete rule, a partial rule's key, or a
//     function called with scalar arguments only, so that keys derived
//     from requests cannot pile up);
//   - shareable values computed by a query that succeeded are kept for the
//     store generation the query read. Commits are counted apart by what
//     they write: the replicated cluster under /kubernetes, rewritten on
//     every informer event, or anything else (the configuration). A value
//     that reads nothing under /kubernetes survives commits there, so
//     cluster churn does not throw the configuration's values away;
//   - a query reads kept values only at its top level, never under a
//     `with`, where data may be replaced.
//
// The generation a query reads has to be that of its transaction. OPA's
// in-memory store guarantees it (a read transaction holds commits off, and
// commit triggers run under the same lock), so the cache is on only there.

// cacheability says which cache keys name data-only values, for one
// compiled bundle.
type cacheability struct {
	root *ast.TreeNode
	// nodes are, for each rule tree node, whether every rule at it and
	// below it is data-only, and whether any reads under /kubernetes.
	nodes map[*ast.TreeNode]dependence
}

type dependence struct {
	dataOnly bool
	kube     bool // may read data under /kubernetes
}

// nondeterministic are built-ins whose result is not a function of their
// arguments, beyond those OPA itself flags (http.send, rand.intn, ...).
var nondeterministic = map[string]bool{
	"time.now_ns": true, "opa.runtime": true, "internal.print": true, "print": true, "trace": true,
	"io.jwt.decode_verify": true,
}

// readsKube reports whether a ref into data, by its ground prefix, may read
// under /kubernetes: data itself, data[x], or data.kubernetes....
func readsKube(prefix ast.Ref) bool {
	if len(prefix) < 2 {
		return true
	}
	return prefix[1].Value.Compare(ast.String("kubernetes")) == 0
}

func newCacheability(c *ast.Compiler) *cacheability {
	ca := &cacheability{root: c.RuleTree, nodes: map[*ast.TreeNode]dependence{}}
	type state struct {
		busy bool
		dep  dependence
	}
	memo := map[*ast.Rule]*state{}
	var ruleDep func(r *ast.Rule) dependence
	ruleDep = func(r *ast.Rule) dependence {
		if st := memo[r]; st != nil {
			if st.busy { // recursion, which the compiler refuses anyway
				return dependence{}
			}
			return st.dep
		}
		st := &state{busy: true}
		memo[r] = st
		dep := dependence{dataOnly: true}
		call := func(op ast.Ref) {
			if name := op.String(); !strings.HasPrefix(name, "data.") && !deterministic(name) {
				dep.dataOnly = false
			}
		}
		visit := func(x any) {
			ast.WalkExprs(x, func(e *ast.Expr) bool {
				if len(e.With) > 0 {
					dep.dataOnly = false
				}
				if e.IsCall() {
					call(e.Operator())
				}
				return !dep.dataOnly
			})
			ast.WalkTerms(x, func(t *ast.Term) bool {
				if !dep.dataOnly {
					return true
				}
				switch v := t.Value.(type) {
				case ast.Var:
					if v.Equal(ast.InputRootDocument.Value) {
						dep.dataOnly = false
					}
				case ast.Call:
					if op, isRef := v[0].Value.(ast.Ref); isRef {
						call(op)
					}
				case ast.Ref:
					if v.HasPrefix(ast.DefaultRootRef) {
						prefix := v.GroundPrefix()
						dep.kube = dep.kube || readsKube(prefix)
						for _, r := range c.GetRules(prefix) {
							d := ruleDep(r)
							dep.dataOnly = dep.dataOnly && d.dataOnly
							dep.kube = dep.kube || d.kube
						}
					}
				}
				return !dep.dataOnly
			})
		}
		// The head's own ref is left out: it names the rule, it does not
		// read it.
		for rr := r; rr != nil && dep.dataOnly; rr = rr.Else {
			visit(rr.Body)
			visit(rr.Head.Args)
			for _, t := range []*ast.Term{rr.Head.Key, rr.Head.Value} {
				if t != nil {
					visit(t)
				}
			}
		}
		st.busy, st.dep = false, dep
		return dep
	}
	var nodeDep func(n *ast.TreeNode) dependence
	nodeDep = func(n *ast.TreeNode) dependence {
		dep := dependence{dataOnly: true}
		for _, r := range n.Values {
			d := ruleDep(r)
			dep.dataOnly = dep.dataOnly && d.dataOnly
			dep.kube = dep.kube || d.kube
		}
		for _, child := range n.Children {
			d := nodeDep(child)
			dep.dataOnly = dep.dataOnly && d.dataOnly
			dep.kube = dep.kube || d.kube
		}
		ca.nodes[n] = dep
		return dep
	}
	nodeDep(c.RuleTree)
	return ca
}

// deterministic reports whether a built-in's result is a function of its
// arguments (and data). Unknown names count as not: only what is known to
// be safe is shared.
func deterministic(name string) bool {
	if strings.HasPrefix(name, BuiltinPrefix) {
		return true // podwall's own: policylib is deterministic
	}
	if nondeterministic[name] {
		return false
	}
	b, ok := ast.BuiltinMap[name]
	return ok && !b.Nondeterministic
}

// shareable reports whether a virtual cache key names a data-only value:
// a ref into data (data.a.b, data.a.p.key), or a function call key (the
// function's ref, then its arguments) with scalar arguments only; and
// whether that value may read under /kubernetes.
func (ca *cacheability) shareable(key ast.Ref) (ok, kube bool) {
	if len(key) == 0 {
		return false, false
	}
	path := key
	if fn, isFn := key[0].Value.(ast.Ref); isFn {
		path = fn
		for _, a := range key[1:] {
			switch a.Value.(type) {
			case ast.String, ast.Number, ast.Boolean, ast.Null:
			default:
				return false, false
			}
		}
	}
	if len(path) == 0 || !path[0].Equal(ast.DefaultRootDocument) {
		return false, false
	}
	node := ca.root
	for _, t := range path {
		if len(node.Values) > 0 {
			break // a rule's path, then a key into its value
		}
		next := node.Child(t.Value)
		if next == nil {
			return false, false // a base document: not a rule value
		}
		node = next
	}
	dep := ca.nodes[node]
	return dep.dataOnly, dep.kube
}

// maxShared bounds the values kept per generation: data-only values are as
// many as the configuration makes them, a few hundred at most.
const maxShared = 4096

// generation is where the store is: how many commits wrote under
// /kubernetes, and how many wrote anything else.
type generation struct{ kube, other uint64 }

// storeGenerations counts an Evaluator's store commits, from a trigger.
type storeGenerations struct {
	kube, other atomic.Uint64
}

func (g *storeGenerations) load() generation {
	return generation{kube: g.kube.Load(), other: g.other.Load()}
}

// sharedCache holds the data-only values of one compiled bundle, for one
// store generation at a time.
type sharedCache struct {
	cls  *cacheability
	gens *storeGenerations
	mu   sync.Mutex // serialises promotions
	snap atomic.Pointer[sharedSnapshot]
}

// sharedSnapshot is immutable once published: readers never lock. Its
// entries that read under /kubernetes hold for gen; the others for every
// generation with gen.other.
type sharedSnapshot struct {
	gen     generation
	entries map[int][]sharedEntry
	n       int
}

type sharedEntry struct {
	key   ast.Ref
	value *ast.Term // nil: undefined
	kube  bool
}

func (s *sharedSnapshot) get(key ast.Ref, gen generation) (sharedEntry, bool) {
	for _, e := range s.entries[key.Hash()] {
		if e.key.Equal(key) {
			if e.kube && gen.kube != s.gen.kube {
				return sharedEntry{}, false
			}
			return e, true
		}
	}
	return sharedEntry{}, false
}

// query returns the virtual cache for one evaluation reading store
// generation gen.
func (s *sharedCache) query(gen generation) *queryCache {
	q := &queryCache{cls: s.cls, gen: gen}
	if snap := s.snap.Load(); snap != nil && snap.gen.other == gen.other {
		q.snap = snap
	}
	return q
}

// promote keeps what a successful query computed, unless the store has
// moved on since.
func (s *sharedCache) promote(q *queryCache) {
	if len(q.pending) == 0 || s.gens.load() != q.gen {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.snap.Load()
	next := &sharedSnapshot{gen: q.gen, entries: map[int][]sharedEntry{}}
	if old != nil && old.gen.other == q.gen.other {
		sameKube := old.gen.kube == q.gen.kube
		for h, es := range old.entries {
			for _, e := range es {
				if !e.kube || sameKube {
					next.entries[h] = append(next.entries[h], e)
					next.n++
				}
			}
		}
	}
	for _, e := range q.pending {
		if next.n >= maxShared {
			break
		}
		if _, ok := next.get(e.key, q.gen); ok {
			continue
		}
		h := e.key.Hash()
		next.entries[h] = append(next.entries[h], e)
		next.n++
	}
	s.snap.Store(next)
}

// queryCache is a topdown.VirtualCache: the query's own values, backed at
// the top level by the shared values.
//
// The query's own values are kept in flat frames rather than in OPA's
// cache, a trie with a hash map per ref element: there every rule value a
// query computed cost some fifteen allocations (a node and a map for each
// of data, podwall, lib, ...), most of the price of evaluating a small
// rule. Here it costs a copy of the key. The semantics are OPA's: Get and
// Put see the top frame only, Push starts an empty one (`with`), Pop drops
// it.
type queryCache struct {
	frames  []localFrame // frames[0] is the query's; the others `with`'s
	cls     *cacheability
	gen     generation
	snap    *sharedSnapshot // nil: nothing kept for this generation yet
	pending []sharedEntry
}

var _ topdown.VirtualCache = (*queryCache)(nil)

// localFrame maps a key's hash to its entries: the first in place (a
// collision is rare), so that a new key allocates nothing but its copy.
type localFrame map[int]localSlot

type localSlot struct {
	first sharedEntry
	more  []sharedEntry
}

// find is the entry for key in s, or nil.
func (s *localSlot) find(key ast.Ref) *sharedEntry {
	if s.first.key.Equal(key) {
		return &s.first
	}
	for i := range s.more {
		if s.more[i].key.Equal(key) {
			return &s.more[i]
		}
	}
	return nil
}

func (q *queryCache) top() localFrame {
	if len(q.frames) == 0 {
		return nil
	}
	return q.frames[len(q.frames)-1]
}

func (q *queryCache) Push() {
	if len(q.frames) == 0 {
		q.frames = append(q.frames, nil) // the query's frame, not made yet
	}
	q.frames = append(q.frames, nil)
}

func (q *queryCache) Pop() {
	if len(q.frames) > 0 {
		q.frames[len(q.frames)-1] = nil
		q.frames = q.frames[:len(q.frames)-1]
	}
}

// depth is the number of frames `with` pushed.
func (q *queryCache) depth() int { return max(len(q.frames)-1, 0) }

func (q *queryCache) Get(ref ast.Ref) (*ast.Term, bool) {
	if f := q.top(); f != nil {
		if slot, ok := f[ref.Hash()]; ok {
			if e := slot.find(ref); e != nil {
				return e.value, e.value == nil
			}
		}
	}
	if q.depth() == 0 && q.snap != nil {
		if e, ok := q.snap.get(ref, q.gen); ok {
			return e.value, e.value == nil
		}
	}
	return nil, false
}

func (q *queryCache) Put(ref ast.Ref, value *ast.Term) {
	if len(q.frames) == 0 {
		q.frames = append(q.frames, nil)
	}
	f := q.frames[len(q.frames)-1]
	if f == nil {
		f = make(localFrame, 32)
		q.frames[len(q.frames)-1] = f
	}
	h := ref.Hash()
	slot, found := f[h]
	if found {
		if e := slot.find(ref); e != nil {
			e.value = value
			f[h] = slot
			return
		}
	}
	// OPA reuses the key's backing array: keep a copy.
	e := sharedEntry{key: slices.Clone(ref), value: value}
	if q.depth() == 0 {
		if ok, kube := q.cls.shareable(ref); ok {
			e.kube = kube
			q.pending = append(q.pending, e)
		}
	}
	if found {
		slot.more = append(slot.more, e)
	} else {
		slot.first = e
	}
	f[h] = slot
}

// Keys are the keys of the top frame that have a value (not undefined).
func (q *queryCache) Keys() []ast.Ref {
	var keys []ast.Ref
	for _, s := range q.top() {
		for _, e := range append([]sharedEntry{s.first}, s.more...) {
			if e.value != nil {
				keys = append(keys, e.key)
			}
		}
	}
	return keys
}

// watchStore counts the store's commits by what they write, until the
// handle is unregistered.
func watchStore(ctx context.Context, store storage.Store) (*storeGenerations, storage.TriggerHandle, error) {
	gens := &storeGenerations{}
	var handle storage.TriggerHandle
	err := storage.Txn(ctx, store, storage.WriteParams, func(txn storage.Transaction) error {
		var err error
		handle, err = store.Register(ctx, txn, storage.TriggerConfig{
			OnCommit: func(_ context.Context, _ storage.Transaction, event storage.TriggerEvent) {
				kube, other := false, len(event.Data) == 0
				for _, d := range event.Data {
					if len(d.Path) > 0 && d.Path[0] == "kubernetes" {
						kube = true
					} else {
						other = true
					}
				}
				if kube {
					gens.kube.Add(1)
				}
				if other {
					gens.other.Add(1)
				}
			},
		})
		return err
	})
	return gens, handle, err
}

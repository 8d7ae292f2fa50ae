package enforcer_test

import (
	"testing"

	"github.com/podwall/podwall/internal/benchcluster"

	"github.com/podwall/podwall/enforcer"
	"github.com/podwall/podwall/internal/netns"
	"github.com/podwall/podwall/policylib"
)

var benchNode = benchcluster.Large

func benchEngine(b *testing.B) *policylib.Engine {
	e, err := policylib.Build(benchNode.Snapshot())
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkCompileRender compiles and renders 110 local pods of a cluster
// of 10,000 pods and 1,000 policies.
func BenchmarkCompileRender(b *testing.B) {
	e := benchEngine(b)
	local := benchNode.Local(110)
	b.ReportAllocs()
	var size int
	for b.Loop() {
		rs, err := enforcer.Compile(e, local, enforcer.Options{})
		if err != nil {
			b.Fatal(err)
		}
		size = len(rs.Render())
	}
	b.ReportMetric(float64(size), "bytes-rendered")
}

func BenchmarkCompile(b *testing.B) {
	e := benchEngine(b)
	local := benchNode.Local(110)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := enforcer.Compile(e, local, enforcer.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyFull replaces the table whole in a throwaway namespace.
// Its elements are the kernel's: an address range in an interval set is a
// start and an end element.
func BenchmarkApplyFull(b *testing.B) {
	lab := netns.New(b)
	e := benchEngine(b)
	rs, err := enforcer.Compile(e, benchNode.Local(110), enforcer.Options{})
	if err != nil {
		b.Fatal(err)
	}
	a := applierIn(b, lab.Node, enforcer.WithConntrackCleanup(false))
	var st enforcer.Stats
	b.ReportAllocs()
	for b.Loop() {
		a.Forget()
		st = apply(b, a, rs)
	}
	b.ReportMetric(float64(st.Messages), "messages")
	b.ReportMetric(float64(st.ElementsAdded), "elements")
}

// BenchmarkUpdateOnePodElsewhere adds or removes one pod on another node
// that many local pods' peers select, then compiles and applies the
// change incrementally (conntrack cleanup included).
func BenchmarkUpdateOnePodElsewhere(b *testing.B) {
	lab := netns.New(b)
	e := benchEngine(b)
	local := benchNode.Local(110)
	rs, err := enforcer.Compile(e, local, enforcer.Options{})
	if err != nil {
		b.Fatal(err)
	}
	a := applierIn(b, lab.Node)
	apply(b, a, rs)
	extra := benchcluster.Extra()
	var st enforcer.Stats
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			if err := e.SetPod(extra); err != nil {
				b.Fatal(err)
			}
		} else {
			e.DeletePod(extra.Namespace, extra.Name)
		}
		rs, err := enforcer.Compile(e, local, enforcer.Options{})
		if err != nil {
			b.Fatal(err)
		}
		st = apply(b, a, rs)
		if st.Full {
			b.Fatal("full replace")
		}
	}
	b.ReportMetric(float64(st.ElementsAdded+st.ElementsDeleted), "elements-changed")
	b.ReportMetric(float64(st.Messages), "messages")
}

// BenchmarkBuildFull builds the batch that replaces the table whole,
// without sending it: the user-space share of BenchmarkApplyFull.
func BenchmarkBuildFull(b *testing.B) {
	e := benchEngine(b)
	rs, err := enforcer.Compile(e, benchNode.Local(110), enforcer.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var msgs, size int
	for b.Loop() {
		msgs, size = enforcer.BuildBatch(nil, rs)
	}
	b.ReportMetric(float64(msgs), "messages")
	b.ReportMetric(float64(size), "bytes")
}

// BenchmarkBuildUpdate builds, without sending, the incremental batch for
// one pod added elsewhere in the cluster: the user-space share of
// BenchmarkUpdateOnePodElsewhere's Apply.
func BenchmarkBuildUpdate(b *testing.B) {
	e := benchEngine(b)
	local := benchNode.Local(110)
	before, err := enforcer.Compile(e, local, enforcer.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.SetPod(benchcluster.Extra()); err != nil {
		b.Fatal(err)
	}
	after, err := enforcer.Compile(e, local, enforcer.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var msgs, size int
	for b.Loop() {
		msgs, size = enforcer.BuildBatch(before, after)
	}
	b.ReportMetric(float64(msgs), "messages")
	b.ReportMetric(float64(size), "bytes")
}

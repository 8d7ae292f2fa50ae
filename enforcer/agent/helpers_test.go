package agent_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podwall/podwall/enforcer"
	"github.com/podwall/podwall/enforcer/agent"
	"github.com/podwall/podwall/policylib"
)

const seed = "../../examples/seed"

var (
	busybox       = netip.MustParseAddr("10.244.1.20")
	busyboxAccess = netip.MustParseAddr("10.244.2.21")
	httpd1        = netip.MustParseAddr("10.244.2.11")
	httpd3        = netip.MustParseAddr("10.244.2.13")
	master        = netip.MustParseAddr("192.168.2.100")
)

// fakeApplier records what it is asked to apply; fail, when set, decides
// whether an Apply fails.
type fakeApplier struct {
	mu      sync.Mutex
	applied []*enforcer.Ruleset
	forgets int
	fail    func(n int) error
	calls   int
}

func (f *fakeApplier) Apply(_ context.Context, rs *enforcer.Ruleset) (enforcer.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail != nil {
		if err := f.fail(f.calls); err != nil {
			return enforcer.Stats{}, err
		}
	}
	f.applied = append(f.applied, rs)
	return enforcer.Stats{Full: len(f.applied) == 1}, nil
}

func (f *fakeApplier) Forget() {
	f.mu.Lock()
	f.forgets++
	f.mu.Unlock()
}

func (f *fakeApplier) last() *enforcer.Ruleset {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.applied) == 0 {
		return nil
	}
	return f.applied[len(f.applied)-1]
}

func (f *fakeApplier) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.applied)
}

// testLogger logs through t.
func testLogger(t testing.TB) logr.Logger {
	return funcr.New(func(prefix, args string) { t.Log(prefix, args) }, funcr.Options{Verbosity: 1})
}

// started is an agent running on a source, stopped when the test ends.
type started struct {
	a   *agent.Agent
	reg *prometheus.Registry
	app *fakeApplier
}

// start runs an agent for node k8s-node2 with a fake applier, unless opts
// has an Applier.
func start(t *testing.T, opts agent.Options, srcs ...agent.Source) *started {
	t.Helper()
	s := &started{reg: prometheus.NewRegistry()}
	if opts.NodeName == "" {
		opts.NodeName = "k8s-node2"
	}
	if opts.Applier == nil {
		s.app = &fakeApplier{}
		opts.Applier = s.app
	}
	if opts.Debounce == 0 {
		opts.Debounce = 5 * time.Millisecond
	}
	if opts.RetryMin == 0 {
		opts.RetryMin = 10 * time.Millisecond
	}
	opts.Registerer = s.reg
	opts.Logger = testLogger(t)
	a, err := agent.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.a = a
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, srcs...) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent.Run: %v", err)
		}
	})
	return s
}

// waitGen waits for the kernel (the applier) to hold generation gen.
func (s *started) waitGen(t *testing.T, gen uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.a.WaitApplied(ctx, gen); err != nil {
		t.Fatalf("%v (status %+v)", err, s.a.Status())
	}
}

// metric returns the value of a counter or gauge (the sum over labels
// matching the given label pairs).
func (s *started) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// seedDir makes a directory holding the seed cluster, for a ManifestSource.
func seedDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"nodes.yaml", "workloads.yaml"} {
		copyFile(t, filepath.Join(seed, "cluster", f), filepath.Join(dir, f))
	}
	return dir
}

// copyFile copies through a rename, as careful writers do.
func copyFile(t testing.TB, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, string(data))
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func removeFile(t testing.TB, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// loads collects a ManifestSource's load results.
type loads struct {
	mu  sync.Mutex
	all []agent.LoadResult
	ch  chan agent.LoadResult
}

func newLoads() *loads { return &loads{ch: make(chan agent.LoadResult, 100)} }

func (l *loads) record(r agent.LoadResult) {
	l.mu.Lock()
	l.all = append(l.all, r)
	l.mu.Unlock()
	select {
	case l.ch <- r:
	default:
	}
}

// next waits for the next load result.
func (l *loads) next(t *testing.T) agent.LoadResult {
	t.Helper()
	select {
	case r := <-l.ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no manifest load within 10s")
		return agent.LoadResult{}
	}
}

// eventually polls cond until it holds or the time is up.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func allowed(rs *enforcer.Ruleset, src, dst netip.Addr, proto policylib.Protocol, port int32) bool {
	return rs.Allowed(src, dst, proto, port)
}

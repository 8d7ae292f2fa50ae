package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podwall/podwall/webhook/rules"
	"github.com/podwall/podwall/webhook/server"
)

// loadCluster is the seed cluster with a default deny in the protected
// namespace, so a pod create there goes through requiredLabels and
// defaultDeny.
func loadCluster() *rules.MemoryCluster {
	c := seedCluster()
	c.Set(defaultDeny("shop"), accessPolicy("shop", "access-httpd", "192.168.2.0/24"))
	return c
}

// loadCase is one kind of review the load test sends, with the decision
// it must get.
type loadCase struct {
	path    string
	body    []byte
	allowed bool
	patched bool
}

func loadCases(tb testing.TB) []loadCase {
	return []loadCase{
		{"/validate", reviewBody(tb, request(tb, admissionv1.Create, pod("shop", "web", map[string]string{"access": "true"}), nil)), true, false},
		{"/validate", reviewBody(tb, request(tb, admissionv1.Create, pod("default", "busybox", map[string]string{"run": "busybox"}), nil)), false, false},
		{"/mutate", reviewBody(tb, request(tb, admissionv1.Create, pod("shop", "busybox", map[string]string{"run": "busybox"}), nil)), true, true},
		{"/validate", reviewBody(tb, request(tb, admissionv1.Create, accessPolicy("shop", "access-httpd", "192.168.2.0/24"), nil)), true, false},
		{"/validate", reviewBody(tb, request(tb, admissionv1.Create, accessPolicy("shop", "wide", "0.0.0.0/0"), nil)), false, false},
	}
}

// quantile of sorted durations.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[int(q*float64(len(d)-1))]
}

// TestLoad sends 100,000 AdmissionReviews at concurrency 64 over HTTPS
// (HTTP/1.1 keep-alive, loopback) to the in-process webhook server, then
// 10,000 at a fixed 1,000 reviews/s, and requires zero errors and every
// decision right. It reports throughput and latency quantiles. It takes
// tens of seconds, so it runs only with PODWALL_LOAD=1:
//
//	PODWALL_LOAD=1 go test -run TestLoad -v ./webhook/server/
func TestLoad(t *testing.T) {
	if os.Getenv("PODWALL_LOAD") != "1" {
		t.Skip("set PODWALL_LOAD=1 to run the load test (100,000 reviews at concurrency 64, then 1,000 reviews/s)")
	}
	s := startStandalone(t, loadCluster())
	cases := loadCases(t)
	const total, conc = 100_000, 64
	client := s.client(conc)

	check := func(i int, code int, body []byte, err error) string {
		if err != nil {
			return err.Error()
		}
		if code != 200 {
			return "HTTP " + strconv.Itoa(code) + ": " + string(body)
		}
		c := cases[i%len(cases)]
		var r struct {
			Response struct {
				Allowed bool   `json:"allowed"`
				Patch   []byte `json:"patch"`
			} `json:"response"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return err.Error()
		}
		if r.Response.Allowed != c.allowed || (len(r.Response.Patch) > 0) != c.patched {
			return "wrong decision: " + string(body)
		}
		return ""
	}
	run := func(name string, n int, workers int, interval time.Duration) {
		lat := make([]time.Duration, n)
		var next atomic.Int64
		var errs atomic.Int64
		var firstErr atomic.Value
		start := time.Now()
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= n {
						return
					}
					if interval > 0 { // open loop: request i is due at start + i*interval
						if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
							time.Sleep(d)
						}
					}
					c := cases[i%len(cases)]
					t0 := time.Now()
					code, body, err := post(client, "https://"+s.addr+c.path, c.body)
					lat[i] = time.Since(t0)
					if msg := check(i, code, body, err); msg != "" {
						errs.Add(1)
						firstErr.CompareAndSwap(nil, msg)
					}
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		slices.Sort(lat)
		t.Logf("%s: %d reviews in %v: %.0f reviews/s; latency p50 %v, p90 %v, p99 %v, p99.9 %v, max %v; errors %d",
			name, n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(),
			quantile(lat, 0.5), quantile(lat, 0.9), quantile(lat, 0.99), quantile(lat, 0.999), lat[len(lat)-1], errs.Load())
		if errs.Load() > 0 {
			t.Errorf("%s: %d errors, first: %v", name, errs.Load(), firstErr.Load())
		}
	}
	run("closed loop, concurrency 64", total, conc, 0)
	run("open loop, 1000 reviews/s", 10_000, conc, time.Millisecond)
}

// BenchmarkValidatorHandle is the validating handler alone (no HTTP): a pod
// create in a protected namespace, against the seed configuration's three
// rules (requiredLabels and defaultDeny apply).
func BenchmarkValidatorHandle(b *testing.B) {
	v, _ := handlers(b, loadCluster())
	req := request(b, admissionv1.Create, pod("shop", "web", map[string]string{"access": "true"}), nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if resp := v.Handle(ctx, req); !resp.Allowed {
			b.Fatal(resp.Result)
		}
	}
}

// BenchmarkValidatorHandleDeny: the same pod without its label, refused.
func BenchmarkValidatorHandleDeny(b *testing.B) {
	v, _ := handlers(b, loadCluster())
	req := request(b, admissionv1.Create, pod("shop", "busybox", map[string]string{"run": "busybox"}), nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if resp := v.Handle(ctx, req); resp.Allowed {
			b.Fatal("allowed")
		}
	}
}

// BenchmarkMutatorHandle: the mutating handler adding access=false.
func BenchmarkMutatorHandle(b *testing.B) {
	_, m := handlers(b, loadCluster())
	req := request(b, admissionv1.Create, pod("shop", "busybox", map[string]string{"run": "busybox"}), nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if resp := m.Handle(ctx, req); len(resp.Patches) != 1 {
			b.Fatal(resp)
		}
	}
}

// BenchmarkValidatorHandleRego is BenchmarkValidatorHandle with every rule
// on the rego engine (testdata/seed-rego.yaml, protectedAccess too):
// requiredLabels and defaultDeny apply, evaluated by the Rego bundle
// reading the same cluster from data.kubernetes.
func BenchmarkValidatorHandleRego(b *testing.B) {
	v, _, _ := engineHandlers(b, "testdata/seed-rego.yaml", loadCluster())
	req := request(b, admissionv1.Create, pod("shop", "web", map[string]string{"access": "true"}), nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if resp := v.Handle(ctx, req); !resp.Allowed {
			b.Fatal(resp.Result)
		}
	}
}

// BenchmarkValidatorHandleDenyRego: the unlabelled pod, refused by Rego.
func BenchmarkValidatorHandleDenyRego(b *testing.B) {
	v, _, _ := engineHandlers(b, "testdata/seed-rego.yaml", loadCluster())
	req := request(b, admissionv1.Create, pod("shop", "busybox", map[string]string{"run": "busybox"}), nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if resp := v.Handle(ctx, req); resp.Allowed {
			b.Fatal("allowed")
		}
	}
}

// BenchmarkMutatorHandleRego: the Rego patch adding access=false.
func BenchmarkMutatorHandleRego(b *testing.B) {
	_, m, _ := engineHandlers(b, "testdata/seed-rego.yaml", loadCluster())
	req := request(b, admissionv1.Create, pod("shop", "busybox", map[string]string{"run": "busybox"}), nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if resp := m.Handle(ctx, req); len(resp.Patches) != 1 {
			b.Fatal(resp)
		}
	}
}

// BenchmarkValidatorHandlePolicy is a NetworkPolicy CREATE (the seed's
// ipBlock policy) on each engine: networkPolicyHygiene lints it with the
// namespace, and on rego protectedAccess decides the flows to the
// protected pod with and without it.
func BenchmarkValidatorHandlePolicy(b *testing.B) {
	c := loadCluster()
	c.Set(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "httpd", Labels: map[string]string{"name": "networkpolicy-demo", "access": "false"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "httpd", Image: "httpd", Ports: []corev1.ContainerPort{{ContainerPort: 80}}}}},
		Status:     corev1.PodStatus{PodIP: "10.0.0.5", PodIPs: []corev1.PodIP{{IP: "10.0.0.5"}}},
	})
	req := request(b, admissionv1.Create, accessPolicy("shop", "access-httpd-2", "192.168.2.0/24"), nil)
	for _, eng := range engines {
		b.Run(eng.name, func(b *testing.B) {
			v, _, _ := engineHandlers(b, eng.config, c)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if resp := v.Handle(ctx, req); !resp.Allowed {
					b.Fatal(resp.Result)
				}
			}
		})
	}
}

// BenchmarkHTTPHandler adds the AdmissionReview decoding and encoding (no
// network).
func BenchmarkHTTPHandler(b *testing.B) {
	v, _ := handlers(b, loadCluster())
	h := server.NewHTTPHandler(v, 0)
	body := reviewBody(b, request(b, admissionv1.Create, pod("shop", "web", map[string]string{"access": "true"}), nil))
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/validate", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Body)
		}
	}
}

// BenchmarkHTTPSRoundTrip is one review at a time over HTTPS (keep-alive,
// loopback) to controller-runtime's webhook server.
func BenchmarkHTTPSRoundTrip(b *testing.B) {
	s := startStandalone(b, loadCluster())
	client := s.client(1)
	body := reviewBody(b, request(b, admissionv1.Create, pod("shop", "web", map[string]string{"access": "true"}), nil))
	url := "https://" + s.addr + "/validate"
	b.ReportAllocs()
	for b.Loop() {
		if code, out, err := post(client, url, body); err != nil || code != 200 {
			b.Fatal(code, string(out), err)
		}
	}
}

// BenchmarkHTTPSParallel: the same with GOMAXPROCS*4 concurrent clients.
func BenchmarkHTTPSParallel(b *testing.B) {
	s := startStandalone(b, loadCluster())
	client := s.client(64)
	body := reviewBody(b, request(b, admissionv1.Create, pod("shop", "web", map[string]string{"access": "true"}), nil))
	url := "https://" + s.addr + "/validate"
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if code, out, err := post(client, url, body); err != nil || code != 200 {
				b.Error(code, string(out), err)
				return
			}
		}
	})
}

package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podwall/podwall/webhook/rules"
	"github.com/podwall/podwall/webhook/server"
)

// seedCluster: default (unprotected, with the seed's policy) and shop
// (protected, empty).
func seedCluster() *rules.MemoryCluster {
	return rules.NewMemoryCluster(
		namespace("default", nil),
		namespace("shop", map[string]string{"podwall.io/protected": "true"}),
		accessPolicy("default", "access-httpd", ""),
	)
}

func handlers(tb testing.TB, c rules.Cluster) (*server.Validator, *server.Mutator) {
	e := seedEvaluator(tb)
	return server.NewValidator(server.Static{E: e}, c, logr.Discard()),
		server.NewMutator(server.Static{E: e}, c, logr.Discard())
}

func TestMutatorAddsDefault(t *testing.T) {
	_, m := handlers(t, seedCluster())
	resp := m.Handle(context.Background(), request(t, admissionv1.Create, pod("default", "busybox", map[string]string{"run": "busybox"}), nil))
	if !resp.Allowed || len(resp.Patches) != 1 {
		t.Fatalf("resp = %+v", resp)
	}
	p := resp.Patches[0]
	if p.Operation != "add" || p.Path != "/metadata/labels/access" || p.Value != "false" {
		t.Errorf("patch = %+v", p)
	}
	if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], `access="false"`) {
		t.Errorf("warnings = %q", resp.Warnings)
	}
	// Already labelled: nothing to do.
	resp = m.Handle(context.Background(), request(t, admissionv1.Create, pod("default", "b2", map[string]string{"access": "true"}), nil))
	if !resp.Allowed || len(resp.Patches) != 0 || len(resp.Warnings) != 0 {
		t.Errorf("labelled pod: %+v", resp)
	}
}

func TestValidatorDenials(t *testing.T) {
	v, _ := handlers(t, seedCluster())
	ctx := context.Background()
	tests := []struct {
		name      string
		req       admission.Request
		allowed   bool
		code      int32
		contains  []string
		causeType string
	}{
		{
			name: "busybox without access",
			req:  request(t, admissionv1.Create, pod("default", "busybox", map[string]string{"run": "busybox"}), nil),
			code: http.StatusForbidden,
			contains: []string{`rule requiredLabels: Pod default/busybox: label "access" is required`,
				`NetworkPolicies in namespace default that select on it: access-httpd`},
			causeType: "requiredLabels/missing-label",
		},
		{
			name:     "access not allowed",
			req:      request(t, admissionv1.Create, pod("default", "b", map[string]string{"access": "yes"}), nil),
			code:     http.StatusForbidden,
			contains: []string{`rule requiredLabels:`, `access="yes" is not allowed`},
		},
		{
			name:     "pod in protected namespace without default deny",
			req:      request(t, admissionv1.Create, pod("shop", "web", map[string]string{"access": "false"}), nil),
			code:     http.StatusForbidden,
			contains: []string{"rule defaultDeny: namespace shop has no default-deny NetworkPolicy for Ingress", "podSelector: {}"},
		},
		{
			name:    "labelled pod",
			req:     request(t, admissionv1.Create, pod("default", "b", map[string]string{"access": "true"}), nil),
			allowed: true,
		},
		{
			name:     "ingress from anywhere",
			req:      request(t, admissionv1.Create, accessPolicy("default", "wide", "0.0.0.0/0"), nil),
			code:     http.StatusForbidden,
			contains: []string{"rule networkPolicyHygiene:", "0.0.0.0/0"},
		},
		{
			name:    "ipBlock policy",
			req:     request(t, admissionv1.Create, accessPolicy("default", "access-httpd", "192.168.2.0/24"), nil),
			allowed: true,
		},
		{
			name: "object that is not what the request says",
			req: func() admission.Request {
				r := request(t, admissionv1.Create, pod("default", "x", nil), nil)
				r.Kind.Kind = "NetworkPolicy"
				r.Kind.Group = "networking.k8s.io"
				return r
			}(),
			code:     http.StatusForbidden,
			contains: []string{"podwall: the request is for a networking.k8s.io/v1 NetworkPolicy, but the object is a v1 Pod"},
		},
		{
			name: "undecodable object",
			req: func() admission.Request {
				r := request(t, admissionv1.Create, pod("default", "x", nil), nil)
				r.Object.Raw = []byte(`{"metadata": 7}`)
				return r
			}(),
			code:     http.StatusForbidden,
			contains: []string{"podwall: cannot decode the v1 Pod"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := v.Handle(ctx, tt.req)
			if resp.Allowed != tt.allowed {
				t.Fatalf("allowed = %v, want %v: %+v", resp.Allowed, tt.allowed, resp.Result)
			}
			if tt.allowed {
				return
			}
			if resp.Result == nil || resp.Result.Code != tt.code || resp.Result.Reason != metav1.StatusReasonForbidden {
				t.Fatalf("result = %+v", resp.Result)
			}
			for _, want := range tt.contains {
				if !strings.Contains(resp.Result.Message, want) {
					t.Errorf("message lacks %q:\n%s", want, resp.Result.Message)
				}
			}
			if resp.Result.Details == nil || len(resp.Result.Details.Causes) == 0 {
				t.Fatalf("no causes: %+v", resp.Result)
			}
			if tt.causeType != "" && string(resp.Result.Details.Causes[0].Type) != tt.causeType {
				t.Errorf("cause = %+v", resp.Result.Details.Causes[0])
			}
		})
	}
}

func TestValidatorLastDefaultDeny(t *testing.T) {
	c := seedCluster()
	dd := defaultDeny("shop")
	c.Set(dd)
	v, _ := handlers(t, c)
	resp := v.Handle(context.Background(), request(t, admissionv1.Delete, nil, dd))
	if resp.Allowed || !strings.Contains(resp.Result.Message, "rule defaultDeny: NetworkPolicy shop/default-deny is the last default deny for Ingress in namespace shop") {
		t.Fatalf("delete of the last default deny: %+v", resp.Result)
	}
	// A second default deny makes the first deletable.
	dd2 := defaultDeny("shop")
	dd2.Name = "deny-all"
	c.Set(dd2)
	if resp := v.Handle(context.Background(), request(t, admissionv1.Delete, nil, dd)); !resp.Allowed {
		t.Fatalf("delete with another default deny: %+v", resp.Result)
	}
}

func TestMalformedRequests(t *testing.T) {
	v, m := handlers(t, seedCluster())
	good := request(t, admissionv1.Create, pod("default", "b", map[string]string{"access": "true"}), nil)
	tests := []struct {
		name   string
		mutate func(*admission.Request)
		want   string
	}{
		{"no uid", func(r *admission.Request) { r.UID = "" }, "no uid"},
		{"no kind", func(r *admission.Request) { r.Kind = metav1.GroupVersionKind{} }, "no kind"},
		{"no operation", func(r *admission.Request) { r.Operation = "" }, "no operation"},
		{"bad operation", func(r *admission.Request) { r.Operation = "PATCH" }, `unknown operation "PATCH"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, h := range []admission.Handler{v, m} {
				r := good
				tt.mutate(&r)
				resp := h.Handle(context.Background(), r)
				if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusBadRequest || !strings.Contains(resp.Result.Message, tt.want) {
					t.Errorf("%T: %+v", h, resp.Result)
				}
			}
		})
	}
}

func TestUncheckedKind(t *testing.T) {
	v, m := handlers(t, seedCluster())
	cm := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "c"}}
	req := request(t, admissionv1.Create, cm, nil)
	resp := v.Handle(context.Background(), req)
	if !resp.Allowed || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "podwall does not check v1 ConfigMap objects") {
		t.Errorf("validate: %+v", resp)
	}
	if resp := m.Handle(context.Background(), req); !resp.Allowed || len(resp.Patches) > 0 {
		t.Errorf("mutate: %+v", resp)
	}
}

// TestCacheNotSynced: a request that comes before the cache has synced is
// answered with 503, never judged against an empty cluster.
func TestCacheNotSynced(t *testing.T) {
	c := &unsyncedCluster{MemoryCluster: seedCluster()}
	v, _ := handlers(t, c)
	v.SetCacheSyncWait(10_000_000) // 10ms
	resp := v.Handle(context.Background(), request(t, admissionv1.Create, pod("default", "b", map[string]string{"access": "true"}), nil))
	if resp.Allowed || resp.Result.Code != http.StatusServiceUnavailable {
		t.Errorf("resp = %+v", resp.Result)
	}
}

type unsyncedCluster struct{ *rules.MemoryCluster }

func (unsyncedCluster) Synced() bool { return false }
func (unsyncedCluster) WaitForSync(ctx context.Context) bool {
	<-ctx.Done()
	return false
}

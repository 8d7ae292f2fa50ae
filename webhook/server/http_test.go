package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podwall/podwall/webhook/server"
)

func validateHandler(tb testing.TB) http.Handler {
	v, _ := handlers(tb, seedCluster())
	return server.NewHTTPHandler(v, 0)
}

func TestHTTPBadInput(t *testing.T) {
	h := validateHandler(t)
	good := reviewBody(t, request(t, admissionv1.Create, pod("default", "b", map[string]string{"access": "true"}), nil))
	big := append([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","x":"`), bytes.Repeat([]byte("a"), server.DefaultMaxRequestBytes)...)
	big = append(big, `"}`...)
	tests := []struct {
		name        string
		method, ct  string
		body        io.Reader
		chunked     bool
		code        int
		contains    string
		wantAllowed bool
	}{
		{"GET", "GET", "application/json", bytes.NewReader(good), false, 405, "method GET not allowed", false},
		{"text/plain", "POST", "text/plain", bytes.NewReader(good), false, 415, `content type "text/plain" not supported`, false},
		{"no content type", "POST", "", bytes.NewReader(good), false, 415, `content type "" not supported`, false},
		{"json with charset", "POST", "application/json; charset=utf-8", bytes.NewReader(good), false, 200, "", true},
		{"empty", "POST", "application/json", bytes.NewReader(nil), false, 400, "empty request body", false},
		{"too large", "POST", "application/json", bytes.NewReader(big), false, 413, "over the limit of 3145728 bytes", false},
		{"too large, chunked", "POST", "application/json", io.MultiReader(bytes.NewReader(big)), true, 413, "over the limit of 3145728 bytes", false},
		{"not JSON", "POST", "application/json", strings.NewReader("apiVersion: v1\n"), false, 400, "malformed AdmissionReview", false},
		{"truncated", "POST", "application/json", bytes.NewReader(good[:len(good)/2]), false, 400, "malformed AdmissionReview", false},
		{"v1beta1", "POST", "application/json", strings.NewReader(`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}`), false, 400, "want an admission.k8s.io/v1 AdmissionReview", false},
		{"other kind", "POST", "application/json", strings.NewReader(`{"apiVersion":"v1","kind":"Pod"}`), false, 400, "want an admission.k8s.io/v1 AdmissionReview", false},
		{"no request", "POST", "application/json", strings.NewReader(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), false, 400, "has no request", false},
		{"case-folded field names are not fields", "POST", "application/json", strings.NewReader(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","Request":{"uid":"x"}}`), false, 400, "has no request", false},
		{"empty request", "POST", "application/json", strings.NewReader(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}`), false, 200, "malformed admission request: no uid, no kind, no operation", false},
		{"good", "POST", "application/json", bytes.NewReader(good), false, 200, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "/validate", tt.body)
			if tt.chunked {
				req.ContentLength = -1
			}
			if tt.ct != "" {
				req.Header.Set("Content-Type", tt.ct)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.code {
				t.Fatalf("code = %d, want %d: %s", rec.Code, tt.code, rec.Body)
			}
			if tt.code != 200 {
				if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || !strings.Contains(rec.Body.String(), tt.contains) {
					t.Errorf("%s: %q, want it to contain %q", ct, rec.Body, tt.contains)
				}
				return
			}
			r := decodeReview(t, rec.Body.Bytes())
			if r.APIVersion != "admission.k8s.io/v1" || r.Kind != "AdmissionReview" {
				t.Errorf("response TypeMeta = %+v", r.TypeMeta)
			}
			if r.Response.Allowed != tt.wantAllowed {
				t.Fatalf("allowed = %v: %+v", r.Response.Allowed, r.Response.Result)
			}
			if tt.contains != "" && !strings.Contains(r.Response.Result.Message, tt.contains) {
				t.Errorf("message %q lacks %q", r.Response.Result.Message, tt.contains)
			}
		})
	}
}

func TestHTTPMutatePatch(t *testing.T) {
	_, m := handlers(t, seedCluster())
	h := server.NewHTTPHandler(m, 0)
	req := request(t, admissionv1.Create, pod("default", "busybox", map[string]string{"run": "busybox"}), nil)
	rec := httptest.NewRecorder()
	hr := httptest.NewRequest("POST", "/mutate", bytes.NewReader(reviewBody(t, req)))
	hr.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, hr)
	r := decodeReview(t, rec.Body.Bytes())
	if !r.Response.Allowed || r.Response.UID != req.UID || r.Response.PatchType == nil || *r.Response.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("response = %+v", r.Response)
	}
	var ops []map[string]any
	if err := json.Unmarshal(r.Response.Patch, &ops); err != nil || len(ops) != 1 || ops[0]["path"] != "/metadata/labels/access" || ops[0]["value"] != "false" {
		t.Errorf("patch = %s (%v)", r.Response.Patch, err)
	}
}

// TestHTTPPanic: a handler panic is a refusal, never an admission.
func TestHTTPPanic(t *testing.T) {
	h := server.NewHTTPHandler(admission.HandlerFunc(func(context.Context, admission.Request) admission.Response { panic("boom") }), 0)
	req := request(t, admissionv1.Create, pod("default", "b", nil), nil)
	rec := httptest.NewRecorder()
	hr := httptest.NewRequest("POST", "/validate", bytes.NewReader(reviewBody(t, req)))
	hr.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, hr)
	r := decodeReview(t, rec.Body.Bytes())
	if r.Response.Allowed || r.Response.Result.Code != 500 || r.Response.UID != req.UID {
		t.Errorf("response = %+v", r.Response)
	}
}

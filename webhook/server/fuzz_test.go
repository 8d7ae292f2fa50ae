package server_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"

	"github.com/podwall/podwall/webhook/server"
)

// FuzzHandler sends arbitrary bodies to the validating and mutating HTTP
// handlers. Whatever the body: no panic; either a plain-text HTTP error or
// an AdmissionReview answering the request's uid; an admission only for a
// well-formed request the rules admit (never a silent allow); a refusal
// always says why; and a patch always applies to the object.
func FuzzHandler(f *testing.F) {
	busybox := pod("default", "busybox", map[string]string{"run": "busybox"})
	deploy := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       busybox.Spec,
			},
		},
	}
	for _, req := range []admission.Request{
		request(f, admissionv1.Create, busybox, nil),
		request(f, admissionv1.Create, pod("shop", "web", map[string]string{"access": "true"}), nil),
		request(f, admissionv1.Update, pod("default", "b", map[string]string{"access": "maybe"}), busybox),
		request(f, admissionv1.Create, deploy, nil),
		request(f, admissionv1.Create, accessPolicy("default", "wide", "0.0.0.0/0"), nil),
		request(f, admissionv1.Create, accessPolicy("shop", "access-httpd", "192.168.2.0/24"), nil),
		request(f, admissionv1.Delete, nil, defaultDeny("shop")),
	} {
		f.Add(byte(0), reviewBody(f, req))
		f.Add(byte(1), reviewBody(f, req))
	}
	f.Add(byte(0), []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Pod","version":"v1"},"operation":"CREATE","object":{"metadata":{"labels":null}}}}`))
	f.Add(byte(1), []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"apps","kind":"Deployment","version":"v1"},"operation":"CREATE","object":{"spec":{"template":{}}}}}`))
	f.Add(byte(0), []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"ConfigMap","version":"v1"},"operation":"CREATE","object":[]}}`))
	f.Add(byte(0), []byte(`{}`))
	f.Add(byte(1), []byte(`null`))

	c := seedCluster()
	c.Set(defaultDeny("shop"))
	e := seedEvaluator(f)
	hv := server.NewHTTPHandler(server.NewValidator(server.Static{E: e}, c, logr.Discard()), 1<<20)
	hm := server.NewHTTPHandler(server.NewMutator(server.Static{E: e}, c, logr.Discard()), 1<<20)

	f.Fuzz(func(t *testing.T, which byte, body []byte) {
		mutate := which&1 == 1
		h := hv
		if mutate {
			h = hm
		}
		hr := httptest.NewRequest("POST", "/review", bytes.NewReader(body))
		hr.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, hr)
		switch rec.Code {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if !strings.HasPrefix(rec.Body.String(), "podwall: ") {
				t.Fatalf("HTTP %d without a reason: %q", rec.Code, rec.Body)
			}
			return
		case http.StatusOK:
		default:
			t.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
		}
		var in admissionv1.AdmissionReview
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(body, &in); err != nil || in.Request == nil {
			t.Fatalf("HTTP 200 for a body that is no review (%v): %q", err, body)
		}
		resp := decodeReview(t, rec.Body.Bytes()).Response
		if resp.UID != in.Request.UID {
			t.Fatalf("response uid %q, request uid %q", resp.UID, in.Request.UID)
		}
		r := in.Request
		if !resp.Allowed {
			if resp.Result == nil || resp.Result.Message == "" || resp.Result.Code < 400 {
				t.Fatalf("refusal without a reason: %+v", resp.Result)
			}
			if mutate && resp.Result.Code == http.StatusForbidden {
				t.Fatalf("the mutating webhook judged a request: %+v", resp.Result)
			}
			return
		}
		switch r.Operation {
		case admissionv1.Create, admissionv1.Update, admissionv1.Delete, admissionv1.Connect:
		default:
			t.Fatalf("admitted a request with operation %q", r.Operation)
		}
		if r.UID == "" || r.Kind.Kind == "" {
			t.Fatalf("admitted a request without uid or kind: %+v", r)
		}
		if !mutate {
			if want := e.Validate(context.Background(), r, c); !want.Allowed {
				t.Fatalf("admitted what the rules deny: %s", want.Message())
			}
		}
		if len(resp.Patch) > 0 {
			p, err := jsonpatch.DecodePatch(resp.Patch)
			if err != nil {
				t.Fatalf("undecodable patch %s: %v", resp.Patch, err)
			}
			if _, err := p.Apply(r.Object.Raw); err != nil {
				t.Fatalf("patch %s does not apply to %s: %v", resp.Patch, r.Object.Raw, err)
			}
		}
	})
}

package rules

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// viaJSON is the input as the Evaluator used to build it, and as OPA's own
// server would: the review encoded, then decoded into an ast value.
func viaJSON(t *testing.T, x any) (ast.Value, error) {
	t.Helper()
	b, err := json.Marshal(x)
	if err != nil {
		return nil, err
	}
	return ast.ValueFromReader(bytes.NewReader(b))
}

// TestParseJSONMatchesValueFromReader holds parseJSON to what
// ast.ValueFromReader makes of the same documents, and to encoding/json's
// verdict on invalid ones.
func TestParseJSONMatchesValueFromReader(t *testing.T) {
	docs := []string{
		`null`, `true`, `false`, `0`, `-0`, `1`, `-12`, `3.25`, `1e3`, `-1.5E-7`, `12345678901234567890123`,
		`""`, `"plain"`, `"esc\"aped\\ \/ \b\f\n\r\t"`, `"\u00e9\u263a\ud83d\ude00"`, `"lone \ud800 surrogate"`,
		`"héllo wörld ☺"`, "\"bad \xff byte\"", "\"bad \xc3 truncated\"",
		`[]`, `{}`, ` [1, "a", null, true, {"k": []}] `, "\n{\"a\":1,\t\"b\":[{}]}\r\n",
		`{"a": 1, "a": 2}`, `{"k": {"x": 1}, "k": "last"}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","labels":{"app.kubernetes.io/name":"web"}},"spec":{"containers":[{"name":"c","ports":[{"containerPort":80}]}]}}`,
	}
	// Many keys, one repeated, past the small-object check.
	var many []string
	for i := range 40 {
		many = append(many, `"k`+strings.Repeat("x", i%20)+`": `+strings.Repeat("1", 1+i%3))
	}
	docs = append(docs, "{"+strings.Join(many, ",")+"}")
	for _, doc := range docs {
		want, err := ast.ValueFromReader(strings.NewReader(doc))
		if err != nil {
			t.Fatalf("%s: ValueFromReader: %v", doc, err)
		}
		got, err := parseJSON([]byte(doc))
		if err != nil {
			t.Errorf("%s: %v", doc, err)
			continue
		}
		if got.Compare(want) != 0 {
			t.Errorf("%s: got %v, want %v", doc, got, want)
		}
		if o, ok := got.(ast.Object); ok && o.Len() != want.(ast.Object).Len() {
			t.Errorf("%s: %d keys, want %d", doc, o.Len(), want.(ast.Object).Len())
		}
	}
	for _, doc := range []string{
		``, ` `, `nul`, `tru`, `01`, `1.`, `.5`, `-`, `1e`, `1e+`, `+1`, `"open`, "\"ctl \x01\"", `"bad \x escape"`,
		`[1,]`, `[1 2]`, `{"a"}`, `{"a":1,}`, `{a:1}`, `{"a":1`, `[`, `{}x`, `1 2`, `"\ud83d\ude0"`,
		strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1),
	} {
		if json.Valid([]byte(doc)) {
			t.Fatalf("%q: encoding/json takes it", doc)
		}
		if v, err := parseJSON([]byte(doc)); err == nil {
			t.Errorf("%q: parsed as %v, want an error", doc, v)
		}
	}
}

// TestReviewValueMatchesJSON holds the input built from the Go request to
// the JSON round trip it replaces.
func TestReviewValueMatchesJSON(t *testing.T) {
	yes := true
	raw := func(s string) runtime.RawExtension { return runtime.RawExtension{Raw: []byte(s)} }
	full := &admissionv1.AdmissionRequest{
		UID:                "8f1c",
		Kind:               metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
		Resource:           metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"},
		SubResource:        "scale",
		RequestKind:        &metav1.GroupVersionKind{Group: "apps", Version: "v1beta1", Kind: "Deployment"},
		RequestResource:    &metav1.GroupVersionResource{Group: "apps", Version: "v1beta1", Resource: "deployments"},
		RequestSubResource: "scale",
		Name:               "web",
		Namespace:          "default",
		Operation:          admissionv1.Update,
		UserInfo: authenticationv1.UserInfo{Username: "system:admin", UID: "u-1", Groups: []string{"system:masters", "b\xffd"},
			Extra: map[string]authenticationv1.ExtraValue{"scopes": {"a", "b"}, "none": nil, "empty": {}}},
		Object:    raw(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"a":"é"}},"spec":{"replicas":3,"x":1.50}}`),
		OldObject: raw(" {\"metadata\": {\"name\": \"web\"}} "),
		DryRun:    &yes,
		Options:   raw(`{"kind":"UpdateOptions","apiVersion":"meta.k8s.io/v1"}`),
	}
	reviews := []*admissionv1.AdmissionReview{
		{Request: &admissionv1.AdmissionRequest{}},
		{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: full},
		{Request: &admissionv1.AdmissionRequest{UID: "x", Operation: admissionv1.Delete, OldObject: raw(`null`),
			UserInfo: authenticationv1.UserInfo{Groups: []string{}}}},
		// An object given as a Go value, not raw bytes.
		{Request: &admissionv1.AdmissionRequest{UID: "y", Operation: admissionv1.Create,
			Object: runtime.RawExtension{Object: pod("web", map[string]string{"team": "web"})}}},
		{Request: &admissionv1.AdmissionRequest{UID: "z"}, Response: &admissionv1.AdmissionResponse{UID: "z", Allowed: true, Warnings: []string{"w"}}},
	}
	for i, r := range reviews {
		want, err := viaJSON(t, r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := reviewValue(r)
		if err != nil {
			t.Fatalf("review %d: %v", i, err)
		}
		if got.Compare(want) != 0 {
			t.Errorf("review %d:\n got %v\nwant %v", i, got, want)
		}
	}

	// Raw bytes that are not JSON fail as the encoder fails.
	bad := &admissionv1.AdmissionReview{Request: &admissionv1.AdmissionRequest{Object: raw(`{"a":`)}}
	if _, err := viaJSON(t, bad); err == nil {
		t.Fatal("encoding/json takes a truncated object")
	}
	if v, err := reviewValue(bad); err == nil {
		t.Errorf("truncated object: got %v, want an error", v)
	}
}

// TestEvalReviewJSON: the review as the API server sends it gets the
// answer the decoded review gets.
func TestEvalReviewJSON(t *testing.T) {
	ctx := t.Context()
	ev := seedEvaluator(t)
	for _, req := range []*admissionv1.AdmissionRequest{
		request(t, admissionv1.Create, "Pod", pod("web", map[string]string{"app.kubernetes.io/name": "web"}), nil),
		request(t, admissionv1.Create, "Pod", pod("web", map[string]string{"team": "ops"}), nil),
		request(t, admissionv1.Update, "Pod", pod("web", map[string]string{"team": "ops"}), pod("web", nil)),
	} {
		review := &admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: req}
		body, err := json.Marshal(review)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ev.EvalReviewJSON(ctx, body)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ev.EvalReview(ctx, review)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: from JSON %+v, decoded %+v", req.Operation, got, want)
		}
	}
	for _, body := range []string{``, `{"request": `, `[]`, `{}`, `{"request": null}`, `{"request": "x"}`} {
		if res, err := ev.EvalReviewJSON(ctx, []byte(body)); err == nil {
			t.Errorf("%q: %+v, want an error", body, res)
		}
	}
}

// FuzzParseJSON holds parseJSON to encoding/json's verdict on validity and,
// for valid documents, to what ast.ValueFromReader makes of them.
func FuzzParseJSON(f *testing.F) {
	for _, seed := range []string{
		`null`, `-1.5E-7`, `"\u00e9\ud83d\ude00"`, "\"bad \xff byte\"", `{"a": 1, "a": 2}`,
		`[1, "a", null, true, {"k": []}]`, `{"metadata":{"labels":{"app":"web"}}}`, `[1,]`, `01`, `"\ud800"`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		got, err := parseJSON(doc)
		if !json.Valid(doc) {
			if err == nil {
				t.Fatalf("%q: parsed as %v, but it is not JSON", doc, got)
			}
			return
		}
		want, werr := ast.ValueFromReader(bytes.NewReader(doc))
		if werr != nil {
			// Deeper than parseJSON allows, say: both must refuse it.
			if err == nil {
				t.Fatalf("%q: parsed as %v; ValueFromReader: %v", doc, got, werr)
			}
			return
		}
		if err != nil {
			if strings.Count(string(doc), "[")+strings.Count(string(doc), "{") > maxJSONDepth {
				return // nesting past maxJSONDepth is refused on purpose
			}
			t.Fatalf("%q: %v", doc, err)
		}
		if got.Compare(want) != 0 {
			t.Fatalf("%q: got %v, want %v", doc, got, want)
		}
	})
}

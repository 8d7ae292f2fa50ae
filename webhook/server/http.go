package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"sync"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"
)

// NewHTTPHandler serves an admission.Handler over HTTP, speaking
// admission.k8s.io/v1 AdmissionReview. What is not a well-formed review
// gets a plain-text HTTP error and is never evaluated:
//
//   - a method other than POST: 405
//   - a Content-Type other than application/json: 415
//   - an empty body: 400; a body over maxBytes (0: DefaultMaxRequestBytes): 413
//   - a body that is not an admission.k8s.io/v1 AdmissionReview with a
//     request (malformed JSON, another kind or version): 400
//
// A well-formed review is answered with HTTP 200 and an AdmissionReview;
// a handler panic is recovered into a refusal (code 500), never an
// admission. Use it with a controller-runtime webhook.Server (Register),
// which adds its request metrics, or any HTTPS server.
func NewHTTPHandler(h admission.Handler, maxBytes int64) http.Handler {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxRequestBytes
	}
	return &httpHandler{wh: &admission.Webhook{Handler: h}, max: maxBytes}
}

type httpHandler struct {
	wh  *admission.Webhook
	max int64
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func httpError(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, "podwall: "+format+"\n", args...)
}

func (h *httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpError(w, http.StatusMethodNotAllowed, "method %s not allowed: send an AdmissionReview with POST", r.Method)
		return
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		httpError(w, http.StatusUnsupportedMediaType, "content type %s not supported: want application/json", strconv.Quote(ct))
		return
	}
	if r.ContentLength > h.max {
		httpError(w, http.StatusRequestEntityTooLarge, "request body of %d bytes is over the limit of %d bytes", r.ContentLength, h.max)
		return
	}
	buf := bufPool.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 64<<10 { // do not keep rare huge buffers
			buf.Reset()
			bufPool.Put(buf)
		}
	}()
	buf.Reset()
	n, err := buf.ReadFrom(io.LimitReader(r.Body, h.max+1))
	if err != nil {
		httpError(w, http.StatusBadRequest, "reading the request body: %v", err)
		return
	}
	if n > h.max {
		httpError(w, http.StatusRequestEntityTooLarge, "request body is over the limit of %d bytes", h.max)
		return
	}
	if n == 0 {
		httpError(w, http.StatusBadRequest, "empty request body: want an AdmissionReview")
		return
	}

	var review admissionv1.AdmissionReview
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(buf.Bytes(), &review); err != nil {
		httpError(w, http.StatusBadRequest, "malformed AdmissionReview: %v", err)
		return
	}
	if review.APIVersion != admissionv1.SchemeGroupVersion.String() || review.Kind != "AdmissionReview" {
		httpError(w, http.StatusBadRequest, "got apiVersion %s, kind %s: want an admission.k8s.io/v1 AdmissionReview",
			strconv.Quote(review.APIVersion), strconv.Quote(review.Kind))
		return
	}
	if review.Request == nil {
		httpError(w, http.StatusBadRequest, "the AdmissionReview has no request")
		return
	}
	// (RawExtension copies what it decodes: nothing shares the pooled buffer.)
	resp := h.wh.Handle(r.Context(), admission.Request{AdmissionRequest: *review.Request})
	out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: &resp.AdmissionResponse}
	buf.Reset()
	enc := json.NewEncoder(buf)
	if err := enc.Encode(out); err != nil {
		httpError(w, http.StatusInternalServerError, "encoding the response: %v", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	_, _ = w.Write(buf.Bytes())
}

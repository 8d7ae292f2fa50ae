package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podwall/podwall/webhook/config"
	"github.com/podwall/podwall/webhook/rules"
)

// Validator is the validating webhook: an admission.Handler that evaluates
// the validating side of the rules. A request some deny rule objects to is
// refused with HTTP code 403 and a message naming each rule and its
// reason; warn findings and lint warnings come back as admission warnings.
type Validator struct {
	handler
}

// Mutator is the mutating webhook: an admission.Handler that returns the
// rules' JSON patches (the requiredLabels defaults) with a warning naming
// what was set. It never refuses a well-formed request; what it cannot fix
// is the Validator's to refuse.
type Mutator struct {
	handler
}

// NewValidator returns the validating handler. log may be the zero Logger
// (controller-runtime's, named podwall.admission).
func NewValidator(src EvaluatorSource, c rules.Cluster, log logr.Logger) *Validator {
	return &Validator{newHandler(src, c, log, "validate")}
}

// NewMutator returns the mutating handler.
func NewMutator(src EvaluatorSource, c rules.Cluster, log logr.Logger) *Mutator {
	return &Mutator{newHandler(src, c, log, "mutate")}
}

var (
	_ admission.Handler = (*Validator)(nil)
	_ admission.Handler = (*Mutator)(nil)
)

// syncWaiter is a Cluster that may not be ready yet (CacheCluster).
type syncWaiter interface {
	Synced() bool
	WaitForSync(ctx context.Context) bool
}

type handler struct {
	src      EvaluatorSource
	cluster  rules.Cluster
	log      logr.Logger
	path     string
	syncWait time.Duration
}

func newHandler(src EvaluatorSource, c rules.Cluster, log logr.Logger, path string) handler {
	if log.GetSink() == nil {
		log = logf.Log.WithName("podwall").WithName("admission")
	}
	return handler{src: src, cluster: c, log: log.WithValues("webhook", path), path: path, syncWait: DefaultCacheSyncWait}
}

// SetCacheSyncWait sets how long a request waits for a cluster cache that
// has not synced yet (default DefaultCacheSyncWait).
func (h *handler) SetCacheSyncWait(d time.Duration) { h.syncWait = d }

// checkedKinds are the group and kind of every object some rule can check.
var checkedKinds = func() map[metav1.GroupKind]bool {
	m := map[metav1.GroupKind]bool{}
	for k, g := range kindGroups {
		m[metav1.GroupKind{Group: g, Kind: k}] = true
	}
	return m
}()

// badRequest is a request podwall refuses to evaluate.
type badRequest struct {
	code int32
	err  error
}

// ruleset is what one request is evaluated with: the Go rules of the
// configuration in force and, when that configuration puts rules on rego
// and they may check this request, the Rego side (held shared until
// release, so the configuration cannot change halfway).
type ruleset struct {
	e       *rules.Evaluator
	rego    *RegoRules // nil: no Rego side, nothing held
	regoFor []regoRule // the rego rules that may check the request
}

func (rs ruleset) release() {
	if rs.rego != nil {
		rs.rego.mu.RUnlock()
	}
}

// prepare checks the request and finds the evaluator and the cluster. A
// non-nil *badRequest is the answer; otherwise the caller releases the
// ruleset.
func (h *handler) prepare(ctx context.Context, req *admissionv1.AdmissionRequest, mutate bool) (ruleset, *badRequest) {
	var problems []string
	if req.UID == "" {
		problems = append(problems, "no uid")
	}
	if req.Kind.Kind == "" {
		problems = append(problems, "no kind")
	}
	switch req.Operation {
	case admissionv1.Create, admissionv1.Update, admissionv1.Delete, admissionv1.Connect:
	case "":
		problems = append(problems, "no operation")
	default:
		problems = append(problems, fmt.Sprintf("unknown operation %q", req.Operation))
	}
	if len(problems) > 0 {
		return ruleset{}, &badRequest{http.StatusBadRequest, fmt.Errorf("podwall: malformed admission request: %s", strings.Join(problems, ", "))}
	}
	if h.src.Evaluator() == nil {
		return ruleset{}, &badRequest{http.StatusInternalServerError, errors.New("podwall: no configuration loaded")}
	}
	if w, ok := h.cluster.(syncWaiter); ok && !w.Synced() {
		if !h.waitFor(ctx, w) {
			return ruleset{}, &badRequest{http.StatusServiceUnavailable, errors.New("podwall: the cluster cache has not synced yet; retry shortly")}
		}
	}
	var r *RegoRules
	if rs, ok := h.src.(RegoSource); ok {
		r = rs.Rego()
	}
	if r == nil {
		e := h.src.Evaluator()
		if rs := applicable(e.Config(), req, mutate); len(rs) > 0 {
			// The Go rules skip rules on rego: evaluating without them
			// would admit what they check.
			return ruleset{}, &badRequest{http.StatusInternalServerError, fmt.Errorf("podwall: rule %s is on the rego engine, but this webhook has no Rego rules", rs[0].name)}
		}
		return ruleset{e: e}, nil
	}
	for retried := false; ; retried = true {
		r.mu.RLock()
		e := h.src.Evaluator()
		rs := ruleset{e: e, rego: r, regoFor: applicable(e.Config(), req, mutate)}
		if len(rs.regoFor) == 0 || r.Synced() {
			return rs, nil
		}
		r.mu.RUnlock()
		if retried || !h.waitFor(ctx, r) {
			return ruleset{}, &badRequest{http.StatusServiceUnavailable, errors.New("podwall: the Rego rules are not ready (their copy of the cluster has not synced yet); retry shortly")}
		}
	}
}

// waitFor waits up to the sync wait for w to sync.
func (h *handler) waitFor(ctx context.Context, w syncWaiter) bool {
	wctx, cancel := context.WithTimeout(ctx, h.syncWait)
	defer cancel()
	return w.WaitForSync(wctx)
}

// Handle implements admission.Handler.
func (v *Validator) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	rs, bad := v.prepare(ctx, &req.AdmissionRequest, false)
	if bad != nil {
		return v.refuse(&req, bad, start)
	}
	defer rs.release() // deferred: a panic must not keep configuration changes out
	var res rules.Result
	if gk := (metav1.GroupKind{Group: req.Kind.Group, Kind: req.Kind.Kind}); !checkedKinds[gk] {
		res = rules.Result{Allowed: true, Warnings: []string{fmt.Sprintf(
			"podwall does not check %s objects: the webhook configuration should not send them", kindString(req.Kind))}}
		v.log.Error(nil, "request for a kind podwall does not check: allowed; fix the webhook configuration's rules",
			"kind", kindString(req.Kind), "uid", req.UID)
	} else {
		res = rs.e.Validate(ctx, &req.AdmissionRequest, v.cluster)
		if len(rs.regoFor) > 0 {
			rs.rego.validate(ctx, &req.AdmissionRequest, rs.regoFor, &res)
		}
	}
	var resp admission.Response
	result := ResultAllowed
	if res.Allowed {
		resp = admission.Allowed("")
	} else {
		result = ResultDenied
		resp = denial(res)
	}
	resp.Warnings = sanitizeWarnings(res.Warnings)
	v.record(&req, res, result, start)
	return resp
}

// Handle implements admission.Handler.
func (m *Mutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	rs, bad := m.prepare(ctx, &req.AdmissionRequest, true)
	if bad != nil {
		return m.refuse(&req, bad, start)
	}
	defer rs.release()
	var res rules.Result
	if gk := (metav1.GroupKind{Group: req.Kind.Group, Kind: req.Kind.Kind}); checkedKinds[gk] {
		res = rs.e.Mutate(ctx, &req.AdmissionRequest, m.cluster)
		if len(rs.regoFor) > 0 {
			rs.rego.mutate(ctx, &req.AdmissionRequest, rs.regoFor, &res)
		}
		res.Allowed = true
	} else {
		res = rules.Result{Allowed: true}
	}
	resp := admission.Allowed("")
	result := ResultAllowed
	if len(res.Patches) > 0 {
		resp = admission.Patched("", res.Patches...)
		result = ResultPatched
	}
	resp.Warnings = sanitizeWarnings(res.Warnings)
	m.record(&req, res, result, start)
	return resp
}

// denial is the response refusing a request: code 403, the message naming
// each deny violation's rule, and a cause per violation.
func denial(res rules.Result) admission.Response {
	var lines []string
	var causes []metav1.StatusCause
	for _, v := range res.Violations {
		if v.Action != config.Deny {
			continue
		}
		lines = append(lines, violationLine(v))
		cause := v.Rule
		if v.Code != "" { // a rule in a bundle of one's own may give none
			cause += "/" + v.Code
		}
		causes = append(causes, metav1.StatusCause{
			Type:    metav1.CauseType(cause),
			Message: v.Summary(),
			Field:   v.Field,
		})
	}
	if len(lines) == 0 { // not allowed without a deny violation: never expected
		lines = append(lines, "podwall: denied")
	}
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{
		Allowed: false,
		Result: &metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    http.StatusForbidden,
			Reason:  metav1.StatusReasonForbidden,
			Message: strings.Join(lines, "\n"),
			Details: &metav1.StatusDetails{Causes: causes},
		},
	}}
}

// violationLine renders a violation as the denial message shows it:
// "rule NAME: MESSAGE".
func violationLine(v rules.Violation) string {
	if v.Rule == rules.RulePodwall {
		return v.Message
	}
	return "rule " + v.Rule + ": " + v.Message
}

func kindString(k metav1.GroupVersionKind) string {
	if k.Group == "" {
		return k.Version + " " + k.Kind
	}
	return k.Group + "/" + k.Version + " " + k.Kind
}

// sanitizeWarnings makes each warning one printable line, as the API server
// drops warnings with control characters.
func sanitizeWarnings(ws []string) []string {
	if len(ws) == 0 {
		return nil
	}
	out := make([]string, 0, len(ws))
	for _, w := range ws {
		clean := true
		for _, r := range w {
			if !unicode.IsPrint(r) {
				clean = false
				break
			}
		}
		if !clean {
			w = strings.Join(strings.FieldsFunc(w, func(r rune) bool { return !unicode.IsPrint(r) }), " ")
		}
		if w != "" {
			out = append(out, w)
		}
	}
	return out
}

func (h *handler) refuse(req *admission.Request, bad *badRequest, start time.Time) admission.Response {
	decisions.WithLabelValues(labelInvalid, string(config.Deny), ResultError).Inc()
	h.log.Error(bad.err, "admission request refused", "uid", req.UID, "operation", req.Operation,
		"kind", kindString(req.Kind), "namespace", req.Namespace, "name", req.Name, "code", bad.code,
		"duration", time.Since(start))
	return admission.Errored(bad.code, bad.err)
}

// loggedViolation is a violation as decision logs show it.
type loggedViolation struct {
	Rule    string `json:"rule"`
	Action  string `json:"action"`
	Code    string `json:"code"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// record counts the decision and logs it: denials, warnings, patches and
// violations at level 0, plain admissions at level 1.
func (h *handler) record(req *admission.Request, res rules.Result, result string, start time.Time) {
	mutate := h.path == "mutate"
	if len(res.Violations) == 0 {
		action := labelNone
		if mutate {
			action = labelMutate
		}
		decisions.WithLabelValues(labelNone, action, result).Inc()
	}
	for _, v := range res.Violations {
		decisions.WithLabelValues(v.Rule, string(v.Action), result).Inc()
	}
	quiet := len(res.Violations) == 0 && len(res.Warnings) == 0 && len(res.Patches) == 0
	log := h.log
	if quiet {
		log = log.V(1)
		if !log.Enabled() {
			return
		}
	}
	kv := []any{
		"uid", req.UID, "operation", req.Operation, "kind", kindString(req.Kind),
		"namespace", req.Namespace, "name", req.Name, "user", req.UserInfo.Username,
		"dryRun", req.DryRun != nil && *req.DryRun,
		"allowed", result != ResultDenied, "result", result,
		"duration", time.Since(start),
	}
	if len(res.Violations) > 0 {
		vs := make([]loggedViolation, len(res.Violations))
		for i, v := range res.Violations {
			vs[i] = loggedViolation{Rule: v.Rule, Action: string(v.Action), Code: v.Code, Field: v.Field, Message: v.Summary()}
		}
		kv = append(kv, "violations", vs)
	}
	if len(res.Warnings) > 0 {
		kv = append(kv, "warnings", res.Warnings)
	}
	if len(res.Patches) > 0 {
		ps := make([]string, len(res.Patches))
		for i, p := range res.Patches {
			ps[i] = p.Operation + " " + p.Path
		}
		kv = append(kv, "patches", ps)
	}
	log.Info("admission decision", kv...)
}

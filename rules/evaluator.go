package rules

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	admissionv1 "k8s.io/api/admission/v1"
)

// The documents the Evaluator reads and writes.
const (
	// ConfigPath is where the AdmissionConfiguration lives in data.
	ConfigPath = "/podwall/config"
	// KubernetesPath is the root of the replicated cluster state
	// (kube-mgmt's layout: namespaces/NAME, pods/NAMESPACE/NAME,
	// networkpolicies/NAMESPACE/NAME, services/NAMESPACE/NAME).
	KubernetesPath = "/kubernetes"
)

// admissionQuery evaluates the three entry points in one pass.
const admissionQuery = "deny := data.podwall.admission.deny; warn := data.podwall.admission.warn; " +
	"dryrun := data.podwall.admission.dryrun; patch := data.podwall.admission.patch"

// Evaluator evaluates AdmissionRequests against a bundle of podwall rules:
// the query is prepared once per bundle, and each Eval reads the data
// (configuration and cluster state) in the Evaluator's store as it is at
// that moment. Reload swaps in a new bundle atomically; a bundle that does
// not compile is refused and the previous one stays in force.
//
// Built-in errors are strict: a podwall built-in that fails (an invalid
// object in the cluster state, say) fails the Eval with its message instead
// of making a rule silently undefined. An Evaluator is safe for concurrent
// use.
type Evaluator struct {
	store    storage.Store
	reloadMu sync.Mutex // one Reload at a time
	cur      atomic.Pointer[prepared]
}

type prepared struct {
	revision string
	query    rego.PreparedEvalQuery
}

// EvaluatorOption configures an Evaluator.
type EvaluatorOption func(*evaluatorOptions)

type evaluatorOptions struct {
	store storage.Store
}

// WithStore makes the Evaluator read data from store, which the caller may
// keep up to date itself (from informers, say). The default is a new
// in-memory store, written with SetConfig and SetData.
func WithStore(s storage.Store) EvaluatorOption {
	return func(o *evaluatorOptions) { o.store = s }
}

// NewEvaluator compiles b (the embedded rules when b is nil) and prepares
// the admission query.
func NewEvaluator(ctx context.Context, b *bundle.Bundle, opts ...EvaluatorOption) (*Evaluator, error) {
	var o evaluatorOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.store == nil {
		o.store = inmem.NewWithOpts(inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	}
	if b == nil {
		var err error
		if b, err = Bundle(""); err != nil {
			return nil, err
		}
	}
	e := &Evaluator{store: o.store}
	if err := e.Reload(ctx, b); err != nil {
		return nil, err
	}
	return e, nil
}

// Reload compiles b and, when it compiles and defines the admission entry
// points, makes it the bundle every following Eval uses. Evals already
// running finish with the previous bundle. On error the previous bundle
// stays in force and the error carries the compiler's messages. The
// bundle's data, if any, is merged into the store.
func (e *Evaluator) Reload(ctx context.Context, b *bundle.Bundle) error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	rev := b.Manifest.Revision
	mods := make(map[string]*ast.Module, len(b.Modules))
	for _, mf := range b.Modules {
		m := mf.Parsed
		if m == nil {
			var err error
			if m, err = ast.ParseModuleWithOpts(mf.Path, string(mf.Raw), ast.ParserOptions{RegoVersion: ast.RegoV1}); err != nil {
				return fmt.Errorf("bundle revision %q refused: %w", rev, err)
			}
		}
		mods[mf.Path] = m
	}
	c := ast.NewCompiler().WithCapabilities(Capabilities()).WithDefaultRegoVersion(ast.RegoV1)
	if c.Compile(mods); c.Failed() {
		return fmt.Errorf("bundle revision %q refused: %w", rev, c.Errors)
	}
	for _, entry := range []string{"deny", "warn", "dryrun", "patch"} {
		ref := ast.MustParseRef("data.podwall.admission." + entry)
		if len(c.GetRules(ref)) == 0 {
			return fmt.Errorf("bundle revision %q refused: it does not define %s", rev, ref)
		}
	}
	opts := append([]func(*rego.Rego){
		rego.Compiler(c),
		rego.Store(e.store),
		rego.Query(admissionQuery),
		rego.StrictBuiltinErrors(true),
	}, Functions()...)
	pq, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return fmt.Errorf("bundle revision %q refused: %w", rev, err)
	}
	if len(b.Data) > 0 {
		if err := mergeData(ctx, e.store, b.Data); err != nil {
			return fmt.Errorf("bundle revision %q: writing its data: %w", rev, err)
		}
	}
	e.cur.Store(&prepared{revision: rev, query: pq})
	return nil
}

// Revision is the manifest revision of the bundle in force.
func (e *Evaluator) Revision() string { return e.cur.Load().revision }

// Store is the store the Evaluator reads data from.
func (e *Evaluator) Store() storage.Store { return e.store }

// SetConfig writes the AdmissionConfiguration (any value that marshals to
// its JSON, such as the webhook's config type) at data.podwall.config.
func (e *Evaluator) SetConfig(ctx context.Context, cfg any) error {
	return e.SetData(ctx, ConfigPath, cfg)
}

// SetData writes value (anything that marshals to JSON) at a data path such
// as "/kubernetes/pods/default/web", creating the parents.
func (e *Evaluator) SetData(ctx context.Context, path string, value any) error {
	p, ok := storage.ParsePath(path)
	if !ok || len(p) == 0 {
		return fmt.Errorf("invalid data path %q: want /a/b/...", path)
	}
	v, err := jsonValue(value)
	if err != nil {
		return fmt.Errorf("data at %s: %w", path, err)
	}
	return storage.Txn(ctx, e.store, storage.WriteParams, func(txn storage.Transaction) error {
		if err := storage.MakeDir(ctx, e.store, txn, p[:len(p)-1]); err != nil {
			return err
		}
		return e.store.Write(ctx, txn, storage.AddOp, p, v)
	})
}

// DeleteData removes the document at a data path; a missing one is not an
// error.
func (e *Evaluator) DeleteData(ctx context.Context, path string) error {
	p, ok := storage.ParsePath(path)
	if !ok || len(p) == 0 {
		return fmt.Errorf("invalid data path %q: want /a/b/...", path)
	}
	err := storage.WriteOne(ctx, e.store, storage.RemoveOp, p, nil)
	if storage.IsNotFound(err) {
		return nil
	}
	return err
}

// Message is one violation or warning: the rule family (its configuration
// key, such as "requiredLabels") and the message for people.
type Message struct {
	Rule string `json:"rule"`
	Msg  string `json:"msg"`
}

// PatchOperation is one JSON patch (RFC 6902) operation.
type PatchOperation struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Result is what the rules said about one request.
type Result struct {
	Revision   string           // the bundle that decided
	Violations []Message        // deny: reject the request
	Warnings   []Message        // warn: admit, with these warnings
	DryRun     []Message        // what dryrun families would have said
	Patch      []PatchOperation // apply when admitting (mutating webhook)
}

// Allowed reports whether no rule denies the request.
func (r *Result) Allowed() bool { return len(r.Violations) == 0 }

// PatchJSON is the patch as the AdmissionResponse carries it, or nil when
// there is none.
func (r *Result) PatchJSON() ([]byte, error) {
	if len(r.Patch) == 0 {
		return nil, nil
	}
	return json.Marshal(r.Patch)
}

// Eval evaluates one AdmissionRequest.
func (e *Evaluator) Eval(ctx context.Context, req *admissionv1.AdmissionRequest) (*Result, error) {
	if req == nil {
		return nil, errors.New("nil AdmissionRequest")
	}
	review := admissionv1.AdmissionReview{Request: req}
	review.APIVersion, review.Kind = "admission.k8s.io/v1", "AdmissionReview"
	return e.EvalReview(ctx, &review)
}

// EvalReview evaluates an AdmissionReview's request; the review is the
// rules' input as it is.
func (e *Evaluator) EvalReview(ctx context.Context, review *admissionv1.AdmissionReview) (*Result, error) {
	if review == nil || review.Request == nil {
		return nil, errors.New("AdmissionReview without a request")
	}
	raw, err := json.Marshal(review)
	if err != nil {
		return nil, fmt.Errorf("encoding the AdmissionReview: %w", err)
	}
	input, err := ast.ValueFromReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("encoding the AdmissionReview: %w", err)
	}
	p := e.cur.Load()
	rs, err := p.query.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		return nil, fmt.Errorf("evaluating bundle revision %q: %w", p.revision, err)
	}
	if len(rs) != 1 {
		return nil, fmt.Errorf("evaluating bundle revision %q: %d results, want 1", p.revision, len(rs))
	}
	b := rs[0].Bindings
	res := &Result{Revision: p.revision}
	if res.Violations, err = messages(b["deny"], "deny"); err != nil {
		return nil, err
	}
	if res.Warnings, err = messages(b["warn"], "warn"); err != nil {
		return nil, err
	}
	if res.DryRun, err = messages(b["dryrun"], "dryrun"); err != nil {
		return nil, err
	}
	if res.Patch, err = patchOps(b["patch"]); err != nil {
		return nil, err
	}
	return res, nil
}

func messages(v any, name string) ([]Message, error) {
	xs, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("data.podwall.admission.%s: want a set, got %T", name, v)
	}
	out := make([]Message, 0, len(xs))
	for _, x := range xs {
		m, ok := x.(map[string]any)
		rule, ok1 := m["rule"].(string)
		msg, ok2 := m["msg"].(string)
		if !ok || !ok1 || !ok2 {
			return nil, fmt.Errorf("data.podwall.admission.%s: want {\"rule\": string, \"msg\": string}, got %v", name, x)
		}
		out = append(out, Message{Rule: rule, Msg: msg})
	}
	return out, nil
}

func patchOps(v any) ([]PatchOperation, error) {
	xs, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("data.podwall.admission.patch: want an array, got %T", v)
	}
	out := make([]PatchOperation, 0, len(xs))
	for _, x := range xs {
		m, ok := x.(map[string]any)
		op, ok1 := m["op"].(string)
		path, ok2 := m["path"].(string)
		if !ok || !ok1 || !ok2 {
			return nil, fmt.Errorf("data.podwall.admission.patch: want {\"op\", \"path\", \"value\"}, got %v", x)
		}
		out = append(out, PatchOperation{Op: op, Path: path, Value: m["value"]})
	}
	return out, nil
}

// jsonValue turns any JSON-marshalable value into the generic form the
// store holds.
func jsonValue(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&out); err != nil {
		return nil, err
	}
	return out, nil
}

// mergeData deep-merges a bundle's data into the store: objects merge, any
// other value replaces what was there.
func mergeData(ctx context.Context, store storage.Store, data map[string]any) error {
	return storage.Txn(ctx, store, storage.WriteParams, func(txn storage.Transaction) error {
		for k, v := range data {
			p := storage.Path{k}
			old, err := store.Read(ctx, txn, p)
			if err != nil && !storage.IsNotFound(err) {
				return err
			}
			if v, ok := old.(ast.Value); ok { // a store returning AST values
				if old, err = ast.JSON(v); err != nil {
					return err
				}
			}
			nv, err := jsonValue(v)
			if err != nil {
				return err
			}
			if err := store.Write(ctx, txn, storage.AddOp, p, merge(old, nv)); err != nil {
				return err
			}
		}
		return nil
	})
}

func merge(old, nv any) any {
	om, ok1 := old.(map[string]any)
	nm, ok2 := nv.(map[string]any)
	if !ok1 || !ok2 {
		return nv
	}
	out := maps.Clone(om)
	for k, v := range nm {
		out[k] = merge(out[k], v)
	}
	return out
}

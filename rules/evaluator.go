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
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
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
	gens     *storeGenerations // the store's commits; nil: no values kept across queries (cache.go)
	trigger  storage.TriggerHandle
	watching atomic.Bool // gens is counting: false after Close
	reloadMu sync.Mutex  // one Reload at a time
	cur      atomic.Pointer[prepared]
}

type prepared struct {
	revision string
	query    rego.PreparedEvalQuery
	shared   *sharedCache // nil when gens is
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
	if snapshotStore(o.store) {
		var err error
		if e.gens, e.trigger, err = watchStore(ctx, o.store); err != nil {
			return nil, fmt.Errorf("watching the store: %w", err)
		}
		e.watching.Store(true)
	}
	if err := e.Reload(ctx, b); err != nil {
		_ = e.Close(ctx) // unregister the store trigger: the store may outlive e
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
	p := &prepared{revision: rev, query: pq}
	if e.gens != nil {
		p.shared = &sharedCache{cls: newCacheability(c), gens: e.gens}
	}
	e.cur.Store(p)
	return nil
}

// snapshotStore reports whether s is OPA's in-memory store, whose read
// transactions hold commits off: the condition for keeping values across
// queries (cache.go). The type is unexported, hence the name.
func snapshotStore(s storage.Store) bool {
	return fmt.Sprintf("%T", s) == "*inmem.store"
}

// Close stops the Evaluator watching its store, which matters when the
// store outlives it (WithStore): each Evaluator counts the store's commits
// from a trigger, to keep values across queries. After Close the Evaluator
// still evaluates, without keeping anything.
func (e *Evaluator) Close(ctx context.Context) error {
	if e.trigger == nil || !e.watching.CompareAndSwap(true, false) {
		return nil
	}
	return storage.Txn(ctx, e.store, storage.WriteParams, func(txn storage.Transaction) error {
		e.trigger.Unregister(ctx, txn)
		return nil
	})
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
// key, such as "requiredLabels"), the message for people, and the
// finding's code and field when the bundle gives them (podwall's rules do,
// except for the warning that says what the patch sets).
type Message struct {
	Rule  string `json:"rule"`
	Msg   string `json:"msg"`
	Code  string `json:"code,omitempty"`
	Field string `json:"field,omitempty"`
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

// Webhook says which of podwall's two admission webhooks an evaluation is
// for; the rules read it as input.podwall.webhook.
type Webhook string

const (
	// Combined is one evaluation answering for both, as OPA serving the
	// bundle on its own does: the patch, and the findings as if it were
	// applied.
	Combined Webhook = ""
	// Mutating is the mutating webhook's evaluation: the patch is what
	// counts (the validating webhook judges the object after it).
	Mutating Webhook = "mutating"
	// Validating is the validating webhook's: the object is judged as it
	// will be stored, any patch already applied or skipped, so a label
	// still missing is a finding even when it has a default.
	Validating Webhook = "validating"
)

// Eval evaluates one AdmissionRequest for both webhooks (Combined).
func (e *Evaluator) Eval(ctx context.Context, req *admissionv1.AdmissionRequest) (*Result, error) {
	return e.EvalFor(ctx, req, Combined)
}

// EvalFor evaluates one AdmissionRequest for one webhook.
func (e *Evaluator) EvalFor(ctx context.Context, req *admissionv1.AdmissionRequest, w Webhook) (*Result, error) {
	if req == nil {
		return nil, errors.New("nil AdmissionRequest")
	}
	review := admissionv1.AdmissionReview{Request: req}
	review.APIVersion, review.Kind = "admission.k8s.io/v1", "AdmissionReview"
	return e.evalReview(ctx, &review, w)
}

// EvalReview evaluates an AdmissionReview's request for both webhooks
// (Combined); the review is the rules' input as it is (as its JSON encoding
// reads).
func (e *Evaluator) EvalReview(ctx context.Context, review *admissionv1.AdmissionReview) (*Result, error) {
	return e.evalReview(ctx, review, Combined)
}

func (e *Evaluator) evalReview(ctx context.Context, review *admissionv1.AdmissionReview, w Webhook) (*Result, error) {
	if review == nil || review.Request == nil {
		return nil, errors.New("AdmissionReview without a request")
	}
	input, err := reviewValue(review)
	if err != nil {
		return nil, fmt.Errorf("encoding the AdmissionReview: %w", err)
	}
	if w != Combined {
		input.(ast.Object).Insert(ast.InternedTerm("podwall"), ast.ObjectTerm(ast.Item(ast.InternedTerm("webhook"), ast.InternedTerm(string(w)))))
	}
	return e.eval(ctx, input)
}

// EvalReviewJSON evaluates an AdmissionReview given as the JSON the API
// server sent (the body of the webhook's request), which is the rules'
// input as it is: the webhook need not decode the objects to have them
// evaluated, and nothing is encoded again.
func (e *Evaluator) EvalReviewJSON(ctx context.Context, body []byte) (*Result, error) {
	input, err := parseJSON(body)
	if err != nil {
		return nil, fmt.Errorf("decoding the AdmissionReview: %w", err)
	}
	obj, ok := input.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("decoding the AdmissionReview: want an object, got %s", ast.ValueName(input))
	}
	if req := obj.Get(ast.InternedTerm("request")); req == nil || !isObject(req.Value) {
		return nil, errors.New("AdmissionReview without a request")
	}
	return e.eval(ctx, input)
}

func isObject(v ast.Value) bool {
	_, ok := v.(ast.Object)
	return ok
}

// Per-evaluation options that leave out what the Evaluator does not use:
// OPA's metrics (timers allocated and started on every Eval) and the
// conversion of the results to Go values (they are read as ast values
// below).
var (
	noMetrics  = metrics.NoOp()
	keepAST    = rego.EvalGenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil })
	neverStops = topdown.NewCancel() // never cancelled: for contexts that cannot be
)

func (e *Evaluator) eval(ctx context.Context, input ast.Value) (*Result, error) {
	p := e.cur.Load()
	opts := []rego.EvalOption{rego.EvalParsedInput(input), rego.EvalMetrics(noMetrics), keepAST}
	// Without a cancel of its own, rego starts a goroutine per Eval to
	// watch ctx; a context that can be cancelled gets a callback instead,
	// and one that cannot (context.Background) nothing at all.
	if ctx.Done() == nil {
		opts = append(opts, rego.EvalExternalCancel(neverStops))
	} else {
		c := topdown.NewCancel()
		stop := context.AfterFunc(ctx, c.Cancel)
		defer stop()
		opts = append(opts, rego.EvalExternalCancel(c))
	}
	var shared *queryCache
	if p.shared != nil && e.watching.Load() {
		// The transaction first, then the generation it reads (cache.go).
		txn, err := e.store.NewTransaction(ctx)
		if err != nil {
			return nil, fmt.Errorf("evaluating bundle revision %q: %w", p.revision, err)
		}
		defer e.store.Abort(ctx, txn)
		shared = p.shared.query(e.gens.load())
		opts = append(opts, rego.EvalTransaction(txn), rego.EvalVirtualCache(shared))
	}
	rs, err := p.query.Eval(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("evaluating bundle revision %q: %w", p.revision, err)
	}
	if shared != nil {
		p.shared.promote(shared)
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

// messages reads a set of {"rule": string, "msg": string} with optional
// string "code" and "field", in the order OPA's JSON conversion of the set
// would give.
func messages(v any, name string) ([]Message, error) {
	t, _ := v.(*ast.Term)
	var set ast.Set
	if t != nil {
		set, _ = t.Value.(ast.Set)
	}
	if set == nil {
		return nil, fmt.Errorf("data.podwall.admission.%s: want a set, got %s", name, valueName(t))
	}
	out := make([]Message, 0, set.Len())
	err := set.Iter(func(x *ast.Term) error {
		rule, ok1 := stringField(x, "rule")
		msg, ok2 := stringField(x, "msg")
		if !ok1 || !ok2 {
			return fmt.Errorf("data.podwall.admission.%s: want {\"rule\": string, \"msg\": string}, got %v", name, x)
		}
		m := Message{Rule: rule, Msg: msg}
		m.Code, _ = stringField(x, "code")
		m.Field, _ = stringField(x, "field")
		out = append(out, m)
		return nil
	})
	return out, err
}

func patchOps(v any) ([]PatchOperation, error) {
	t, _ := v.(*ast.Term)
	var arr *ast.Array
	if t != nil {
		arr, _ = t.Value.(*ast.Array)
	}
	if arr == nil {
		return nil, fmt.Errorf("data.podwall.admission.patch: want an array, got %s", valueName(t))
	}
	out := make([]PatchOperation, 0, arr.Len())
	for i := range arr.Len() {
		x := arr.Elem(i)
		op, ok1 := stringField(x, "op")
		path, ok2 := stringField(x, "path")
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("data.podwall.admission.patch: want {\"op\", \"path\", \"value\"}, got %v", x)
		}
		var value any
		if val := x.Value.(ast.Object).Get(ast.InternedTerm("value")); val != nil {
			var err error
			if value, err = ast.JSON(val.Value); err != nil {
				return nil, fmt.Errorf("data.podwall.admission.patch: %w", err)
			}
		}
		out = append(out, PatchOperation{Op: op, Path: path, Value: value})
	}
	return out, nil
}

// stringField is obj[key] when obj is an object and that is a string.
func stringField(obj *ast.Term, key string) (string, bool) {
	o, ok := obj.Value.(ast.Object)
	if !ok {
		return "", false
	}
	v := o.Get(ast.InternedTerm(key))
	if v == nil {
		return "", false
	}
	s, ok := v.Value.(ast.String)
	return string(s), ok
}

func valueName(t *ast.Term) string {
	if t == nil {
		return "nothing"
	}
	return ast.ValueName(t.Value)
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

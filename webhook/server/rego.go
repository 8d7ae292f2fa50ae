package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	regorules "github.com/podwall/podwall/rules"
	"github.com/podwall/podwall/webhook/config"
	"github.com/podwall/podwall/webhook/rules"
)

// CodeRegoError is the violation code of a rule whose Rego evaluation
// failed; the rule's action applies to it, so a deny rule fails closed.
const CodeRegoError = "rego-error"

// RegoRules runs the rules whose engine is rego: a [regorules.Evaluator]
// (the Rego bundle, its admission query prepared once per bundle) reading
// data.podwall.config, which holds the rego rules of the configuration in
// force, and data.kubernetes, the cluster state in kube-mgmt's layout.
//
// The handlers evaluate the Go rules of a configuration with
// [rules.Evaluator] and its rego rules here, and merge the results; a
// request sees one configuration on both sides, because evaluations hold
// a shared lock that a configuration change (SetConfig, or a
// [ConfigWatcher] made WithRego) takes exclusively.
//
// Nothing is compiled or replicated while no rule uses rego: the embedded
// bundle is compiled when a configuration first needs it, and
// data.kubernetes is kept (from the informers of the cluster attached by
// [Server]) only while some rule uses rego. The Rego rules' findings carry
// the codes and fields the bundle gives them, as the Go rules' do.
//
// RegoRules is safe for concurrent use.
type RegoRules struct {
	log   logr.Logger
	store storage.Store
	// bundle is what a lazy build compiles (nil: the embedded rules).
	bundle *bundle.Bundle

	buildMu sync.Mutex // one build or bundle reload at a time
	ev      atomic.Pointer[regorules.Evaluator]
	kube    *kubeSync // nil: data.kubernetes is the caller's to write

	// cfgMu makes configuration changes one at a time: setConfig starts
	// the cluster's replication before taking mu and stops it after, and
	// two changes interleaving there could leave rego rules in force with
	// replication stopped.
	cfgMu    sync.Mutex
	mu       sync.RWMutex // shared by evaluations, exclusive while the configuration changes
	doc      any          // the data.podwall.config in force; nil before any
	families atomic.Pointer[[]string]
}

// NewRegoRules returns the Rego side of the webhook. With a nil b the
// embedded rules are used, compiled when a configuration first has a rule
// on rego; any other bundle is compiled now, and an error carries the
// compiler's messages. log may be the zero Logger.
func NewRegoRules(ctx context.Context, b *bundle.Bundle, log logr.Logger) (*RegoRules, error) {
	if log.GetSink() == nil {
		log = logf.Log.WithName("podwall").WithName("rego")
	}
	r := &RegoRules{
		log:   log,
		store: inmem.NewWithOpts(inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true)),
	}
	r.families.Store(new([]string))
	if b != nil {
		if err := r.build(ctx, b); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Store is the store the Rego rules read: data.podwall.config and
// data.kubernetes. Without an attached cluster the caller keeps
// data.kubernetes there (with regorules.PutKubernetesObject).
func (r *RegoRules) Store() storage.Store { return r.store }

// Evaluator is the Rego evaluator, nil until some configuration has needed
// it (or a bundle was given).
func (r *RegoRules) Evaluator() *regorules.Evaluator { return r.ev.Load() }

// Revision is the revision of the bundle in force (its manifest's, else
// one derived from its content), "" before one is compiled.
func (r *RegoRules) Revision() string {
	if e := r.ev.Load(); e != nil {
		return e.Revision()
	}
	return ""
}

// Rules returns the rules of the configuration in force whose engine is
// rego.
func (r *RegoRules) Rules() []string { return slices.Clone(*r.families.Load()) }

// Synced reports whether the Rego rules can be evaluated: no rule uses
// rego, or the bundle is compiled and data.kubernetes holds the informers'
// initial lists.
func (r *RegoRules) Synced() bool {
	if len(*r.families.Load()) == 0 {
		return true
	}
	return r.ev.Load() != nil && (r.kube == nil || r.kube.synced())
}

// WaitForSync waits until Synced or ctx ends, and reports Synced.
func (r *RegoRules) WaitForSync(ctx context.Context) bool {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !r.Synced() {
		select {
		case <-ctx.Done():
			return r.Synced()
		case <-t.C:
		}
	}
	return true
}

// build compiles b (nil: the bundle given to NewRegoRules, else the
// embedded rules) into the evaluator if there is none yet.
func (r *RegoRules) build(ctx context.Context, b *bundle.Bundle) error {
	r.buildMu.Lock()
	defer r.buildMu.Unlock()
	if r.ev.Load() != nil {
		return nil
	}
	return r.buildLocked(ctx, b)
}

func (r *RegoRules) buildLocked(ctx context.Context, b *bundle.Bundle) error {
	if b == nil {
		b = r.bundle
	}
	if b == nil {
		var err error
		if b, err = regorules.Bundle(""); err != nil {
			return fmt.Errorf("the embedded Rego rules: %w", err)
		}
	}
	setRevision(b)
	e, err := regorules.NewEvaluator(ctx, b, regorules.WithStore(r.store))
	if err != nil {
		return err
	}
	r.mu.RLock()
	doc := r.doc
	r.mu.RUnlock()
	if doc != nil {
		if err := e.SetConfig(ctx, doc); err != nil {
			_ = e.Close(ctx) // its trigger on r.store must not outlive it
			return fmt.Errorf("writing data.podwall.config: %w", err)
		}
	}
	r.bundle = b
	if old := r.ev.Swap(e); old != nil {
		// Its store, r.store, lives on: stop the old evaluator watching it.
		// Evaluations still running with it finish, keeping nothing.
		if err := old.Close(ctx); err != nil {
			r.log.Error(err, "closing the previous Rego evaluator")
		}
	}
	setBundleInfo(e.Revision())
	r.log.Info("Rego rules compiled", "revision", e.Revision(), "modules", len(b.Modules))
	return nil
}

// ReloadBundle compiles b and makes it the bundle every following
// evaluation uses. On error (the compiler's messages) the previous bundle
// stays in force. A bundle without a manifest revision is given one from
// its content ("sha256:" and 16 hex digits), so metrics and logs tell
// bundles apart.
func (r *RegoRules) ReloadBundle(ctx context.Context, b *bundle.Bundle) error {
	setRevision(b)
	r.buildMu.Lock()
	defer r.buildMu.Unlock()
	e := r.ev.Load()
	if e == nil {
		return r.buildLocked(ctx, b)
	}
	if len(b.Data) == 0 {
		if err := e.Reload(ctx, b); err != nil {
			return err
		}
	} else {
		// The bundle's data is merged into the store and may carry a
		// data.podwall.config of its own (one shipped for a stock OPA):
		// ours is written back before any request sees the new bundle.
		r.mu.Lock()
		err := e.Reload(ctx, b)
		if err == nil && r.doc != nil {
			err = e.SetConfig(ctx, r.doc)
		}
		r.mu.Unlock()
		if err != nil {
			return err
		}
	}
	r.bundle = b
	setBundleInfo(e.Revision())
	return nil
}

// setRevision fills in a missing manifest revision with a digest of the
// bundle's modules and data.
func setRevision(b *bundle.Bundle) {
	if b.Manifest.Revision != "" {
		return
	}
	h := sha256.New()
	mods := slices.Clone(b.Modules)
	slices.SortFunc(mods, func(a, b bundle.ModuleFile) int { return strings.Compare(a.Path, b.Path) })
	for _, m := range mods {
		fmt.Fprintf(h, "%s\x00%d\x00", m.Path, len(m.Raw))
		h.Write(m.Raw)
	}
	data, _ := json.Marshal(b.Data) // maps marshal in key order
	h.Write(data)
	b.Manifest.Revision = "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]
}

// SetConfig makes cfg's rego rules the ones evaluated. See setConfig.
func (r *RegoRules) SetConfig(ctx context.Context, cfg *config.AdmissionConfiguration) error {
	return r.setConfig(ctx, cfg, false, nil)
}

// setConfig writes data.podwall.config for cfg (defaulted), compiling the
// bundle and starting the replication of the cluster first when cfg is the
// first to need them (waiting for the replication to catch up when
// waitSync), and calls commit (the Go side's switch) under the same
// exclusive lock, so no request sees one side's configuration with the
// other's. Once no rule uses rego the replicated cluster is dropped.
func (r *RegoRules) setConfig(ctx context.Context, cfg *config.AdmissionConfiguration, waitSync bool, commit func()) error {
	r.cfgMu.Lock()
	defer r.cfgMu.Unlock()
	fams := RegoRuleNames(cfg)
	if len(fams) > 0 {
		if err := r.build(ctx, nil); err != nil {
			return err
		}
		if r.kube != nil {
			if err := r.kube.start(); err != nil {
				return err
			}
			if waitSync {
				wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				if !r.kube.waitForSync(wctx) {
					r.log.Info("WARNING: the Rego rules' copy of the cluster has not caught up after 30s; requests they check wait for it", "rules", fams)
				}
				cancel()
			}
		}
	}
	doc, err := regoDocument(cfg)
	if err != nil {
		return err
	}
	r.mu.Lock()
	if e := r.ev.Load(); e != nil {
		if err := e.SetConfig(ctx, doc); err != nil {
			r.mu.Unlock()
			return fmt.Errorf("writing data.podwall.config: %w", err)
		}
	}
	r.doc = doc
	r.families.Store(&fams)
	if commit != nil {
		commit()
	}
	r.mu.Unlock()
	if len(fams) == 0 && r.kube != nil {
		r.kube.stop(ctx)
	}
	return nil
}

// regoRule is one rule whose engine is rego.
type regoRule struct {
	name   string
	common *config.Common
}

// regoRules lists cfg's rules whose engine is rego.
func regoRules(cfg *config.AdmissionConfiguration) []regoRule {
	var out []regoRule
	add := func(name string, c *config.Common) {
		if c.Engine == config.EngineRego {
			out = append(out, regoRule{name, c})
		}
	}
	if r := cfg.Rules.RequiredLabels; r != nil {
		add(config.RuleRequiredLabels, &r.Common)
	}
	if r := cfg.Rules.DefaultDeny; r != nil {
		add(config.RuleDefaultDeny, &r.Common)
	}
	if r := cfg.Rules.NetworkPolicyHygiene; r != nil {
		add(config.RuleNetworkPolicyHygiene, &r.Common)
	}
	if r := cfg.Rules.ProtectedAccess; r != nil {
		add(config.RuleProtectedAccess, &r.Common)
	}
	return out
}

// RegoRuleNames lists the configured rules whose engine is rego.
func RegoRuleNames(cfg *config.AdmissionConfiguration) []string {
	out := []string{}
	for _, r := range regoRules(cfg) {
		out = append(out, r.name)
	}
	return out
}

// regoDocument is data.podwall.config for cfg: cfg defaulted, with only its
// rego rules, as the bundle evaluates every rule present. One exception:
// networkPolicyHygiene on rego reads defaultDeny's match to know the
// protected namespaces, so a defaultDeny on go stays in with
// match.kinds [], which the bundle applies to no request (and its results
// would be dropped anyway).
func regoDocument(cfg *config.AdmissionConfiguration) (map[string]any, error) {
	c := cfg.DeepCopy()
	c.Default()
	if c.APIVersion == "" {
		c.APIVersion, c.Kind = config.APIVersion, config.Kind
	}
	keepDefaultDeny := false
	if r := c.Rules.RequiredLabels; r != nil && r.Engine != config.EngineRego {
		c.Rules.RequiredLabels = nil
	}
	if r := c.Rules.NetworkPolicyHygiene; r != nil && r.Engine != config.EngineRego {
		c.Rules.NetworkPolicyHygiene = nil
	}
	if r := c.Rules.ProtectedAccess; r != nil && r.Engine != config.EngineRego {
		c.Rules.ProtectedAccess = nil
	}
	if r := c.Rules.DefaultDeny; r != nil && r.Engine != config.EngineRego {
		if c.Rules.NetworkPolicyHygiene == nil {
			c.Rules.DefaultDeny = nil
		} else {
			keepDefaultDeny = true
		}
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding the configuration for the Rego rules: %w", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("encoding the configuration for the Rego rules: %w", err)
	}
	if keepDefaultDeny {
		dd := doc["rules"].(map[string]any)[config.RuleDefaultDeny].(map[string]any)
		m, _ := dd["match"].(map[string]any)
		if m == nil {
			m = map[string]any{}
			dd["match"] = m
		}
		m["kinds"] = []any{}
	}
	return doc, nil
}

// kindGroups are the API groups of the kinds the rules check (see
// checkedKinds).
var kindGroups = map[string]string{
	config.KindPod: "", config.KindDeployment: "apps", config.KindReplicaSet: "apps",
	config.KindStatefulSet: "apps", config.KindDaemonSet: "apps", config.KindJob: "batch",
	config.KindCronJob: "batch", config.KindNetworkPolicy: "networking.k8s.io",
}

// applicable returns the rego rules of cfg that may check req (by kind and
// operation; the bundle decides the rest of the match): when there are
// none, the request costs no Rego evaluation.
func applicable(cfg *config.AdmissionConfiguration, req *admissionv1.AdmissionRequest, mutate bool) []regoRule {
	if req.SubResource != "" {
		return nil
	}
	switch req.Operation {
	case admissionv1.Create:
	case admissionv1.Update, admissionv1.Delete:
		if mutate {
			return nil // the only mutation, label defaults, is on CREATE
		}
	default:
		return nil
	}
	if !checkedKinds[metav1.GroupKind{Group: req.Kind.Group, Kind: req.Kind.Kind}] {
		return nil
	}
	var out []regoRule
	for _, r := range regoRules(cfg) {
		if mutate && r.name != config.RuleRequiredLabels {
			continue
		}
		if slices.Contains(r.common.Match.Kinds, req.Kind.Kind) {
			out = append(out, r)
		}
	}
	return out
}

// Validate adds to res what the rego rules of cfg (the configuration last
// given to SetConfig) say of req, as the validating webhook does. It is
// for evaluating outside the webhook (podwall check and audit), where the
// caller keeps data.kubernetes in Store itself.
func (r *RegoRules) Validate(ctx context.Context, cfg *config.AdmissionConfiguration, req *admissionv1.AdmissionRequest, res *rules.Result) {
	if rs := applicable(cfg, req, false); len(rs) > 0 {
		r.mu.RLock()
		defer r.mu.RUnlock()
		r.validate(ctx, req, rs, res)
	}
}

// Mutate adds to res the patch and notes of cfg's requiredLabels rule on
// rego for req, as the mutating webhook does; see Validate.
func (r *RegoRules) Mutate(ctx context.Context, cfg *config.AdmissionConfiguration, req *admissionv1.AdmissionRequest, res *rules.Result) {
	if rs := applicable(cfg, req, true); len(rs) > 0 {
		r.mu.RLock()
		defer r.mu.RUnlock()
		r.mutate(ctx, req, rs, res)
	}
}

// eval evaluates req with the bundle for one webhook. Callers hold r.mu
// shared.
func (r *RegoRules) eval(ctx context.Context, req *admissionv1.AdmissionRequest, w regorules.Webhook) (*regorules.Result, error) {
	e := r.ev.Load()
	if e == nil {
		return nil, errors.New("the Rego rules are not compiled")
	}
	return e.EvalFor(ctx, req, w)
}

// validate evaluates the rego rules rs on req for the validating webhook
// and adds their findings to res.
//
// The evaluation is the validating webhook's (regorules.Validating): the
// object is judged as it will be stored, so a label with a default that
// the mutating webhook did not set (it did not run, its failurePolicy
// being Ignore, or a later mutation removed the label) is reported by the
// rules themselves, as the Go rule reports it.
func (r *RegoRules) validate(ctx context.Context, req *admissionv1.AdmissionRequest, rs []regoRule, res *rules.Result) {
	out, err := r.eval(ctx, req, regorules.Validating)
	if err != nil {
		r.failAll(rs, err, res)
		return
	}
	want := map[string]config.EnforcementAction{}
	for _, x := range rs {
		want[x.name] = x.common.EnforcementAction
	}
	for _, set := range []struct {
		msgs   []regorules.Message
		action config.EnforcementAction
	}{{out.Violations, config.Deny}, {out.Warnings, config.Warn}, {out.DryRun, config.DryRun}} {
		for _, m := range set.msgs {
			if _, ok := want[m.Rule]; !ok || isPatchNote(m) || isDefaultRecord(m) {
				continue // the mutating side's, from a bundle that ignores input.podwall.webhook
			}
			addViolation(res, rules.Violation{Rule: m.Rule, Action: set.action, Code: m.Code, Field: m.Field, Message: m.Msg})
		}
	}
	// A bundle that ignores input.podwall.webhook (one's own, or one built
	// before podwall set it) judges the object as if its patch were
	// applied. Labels its patch would add are still missing: refuse, as
	// the Go rule does, rather than admit the object unlabelled.
	if action, ok := want[config.RuleRequiredLabels]; ok {
		for _, l := range patchedLabels(out.Patch) {
			addViolation(res, rules.Violation{
				Rule: config.RuleRequiredLabels, Action: action, Code: rules.CodeMissingLabel, Field: l.field,
				Message: fmt.Sprintf("%s %s/%s: label %q is required (the bundle in force, revision %q, would set its default %q, but it does not read input.podwall.webhook and judged the object as if it had)",
					req.Kind.Kind, req.Namespace, req.Name, l.key, out.Revision, l.value),
			})
		}
	}
}

// mutate evaluates requiredLabels on rego for the mutating webhook: its
// patch, the warning saying what the patch sets (or why it sets nothing),
// and in dryrun what it would have set.
func (r *RegoRules) mutate(ctx context.Context, req *admissionv1.AdmissionRequest, rs []regoRule, res *rules.Result) {
	out, err := r.eval(ctx, req, regorules.Mutating)
	if err != nil {
		return // the validating side reports it, as the Go rules do
	}
	for _, p := range out.Patch {
		res.Patches = append(res.Patches, jsonpatch.JsonPatchOperation{Operation: p.Op, Path: p.Path, Value: p.Value})
	}
	for _, m := range out.Warnings {
		if isPatchNote(m) {
			res.Warnings = append(res.Warnings, m.Msg)
		}
	}
	for _, m := range out.DryRun {
		if isDefaultRecord(m) {
			addViolation(res, rules.Violation{Rule: m.Rule, Action: config.DryRun, Code: m.Code, Field: m.Field, Message: m.Msg})
		}
	}
}

// failAll records a failed evaluation against every rule it was for, each
// with its own action: a deny rule fails closed.
func (r *RegoRules) failAll(rs []regoRule, err error, res *rules.Result) {
	msg := "podwall: the Rego rules failed: " + err.Error() // names the bundle revision
	for _, x := range rs {
		addViolation(res, rules.Violation{Rule: x.name, Action: x.common.EnforcementAction, Code: CodeRegoError, Message: msg})
	}
}

// codeDefaultsNote marks the requiredLabels warning that says what the
// patch sets, or why it sets nothing: the mutating webhook's to give, not a
// finding.
const codeDefaultsNote = "defaults-note"

// isPatchNote tells the requiredLabels note about the patch from the rule's
// findings: by its code, or, from a bundle built before the code, as the one
// message that names its rule itself.
func isPatchNote(m regorules.Message) bool {
	return m.Rule == config.RuleRequiredLabels &&
		(m.Code == codeDefaultsNote || m.Code == "" && strings.HasPrefix(m.Msg, config.RuleRequiredLabels+": "))
}

// patchedLabel is a label a patch adds, and the field path where it goes,
// as in "spec.template.metadata.labels[team]".
type patchedLabel struct{ key, value, field string }

// patchedLabels returns the labels a patch adds, by the form of its
// operations: a label into a label map (".../labels/KEY"), a whole label
// map (".../labels"), or a metadata object holding one. Other operations
// are not labels.
func patchedLabels(ops []regorules.PatchOperation) []patchedLabel {
	var out []patchedLabel
	addMap := func(path []string, m map[string]any) {
		for k, v := range m {
			if s, ok := v.(string); ok {
				out = append(out, patchedLabel{k, s, strings.Join(path, ".") + "[" + k + "]"})
			}
		}
	}
	for _, op := range ops {
		if op.Op != "add" {
			continue
		}
		path := pointerTokens(op.Path)
		n := len(path)
		switch v := op.Value.(type) {
		case string:
			if n >= 2 && path[n-2] == "labels" {
				out = append(out, patchedLabel{path[n-1], v, strings.Join(path[:n-1], ".") + "[" + path[n-1] + "]"})
			}
		case map[string]any:
			if n >= 1 && path[n-1] == "labels" {
				addMap(path, v)
			} else if ls, ok := v["labels"].(map[string]any); ok && n >= 1 && path[n-1] == "metadata" {
				addMap(append(path, "labels"), ls)
			}
		}
	}
	slices.SortFunc(out, func(a, b patchedLabel) int { return strings.Compare(a.field, b.field) })
	return out
}

// pointerTokens splits a JSON pointer (RFC 6901) into its unescaped tokens.
func pointerTokens(p string) []string {
	if p == "" {
		return nil
	}
	toks := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, t := range toks {
		toks[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(t)
	}
	return toks
}

// isDefaultRecord tells requiredLabels' dryrun record of a default the
// patch would have set ("... would set missing ..."): the Go rule records
// it on the mutating side, where defaults are set, and so does this.
func isDefaultRecord(m regorules.Message) bool {
	return m.Rule == config.RuleRequiredLabels && m.Code == rules.CodeMissingLabel && strings.Contains(m.Msg, ": would set missing ")
}

// addViolation adds v to res as the Go rules' Result.finish would: a deny
// refuses the request, a warn becomes a warning (Violation.Warning).
func addViolation(res *rules.Result, v rules.Violation) {
	res.Violations = append(res.Violations, v)
	switch v.Action {
	case config.Deny:
		res.Allowed = false
	case config.Warn:
		res.Warnings = append(res.Warnings, v.Warning())
	}
}

// compileErrors splits an error from the Rego compiler into its messages,
// one per problem (file:row: message), for logging one line each.
func compileErrors(err error) []string {
	var errs ast.Errors
	if errors.As(err, &errs) && len(errs) > 0 {
		out := make([]string, len(errs))
		for i, e := range errs {
			out[i] = e.Error()
		}
		return out
	}
	return []string{err.Error()}
}

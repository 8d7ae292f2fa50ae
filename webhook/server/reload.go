package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"

	"github.com/podwall/podwall/webhook/config"
	"github.com/podwall/podwall/webhook/rules"
)

// EvaluatorSource gives the evaluator to use for a request. Handlers call
// it once per request, so a configuration reload never changes the rules
// in the middle of one.
type EvaluatorSource interface {
	Evaluator() *rules.Evaluator
}

// RegoSource is an EvaluatorSource whose configurations may put rules on
// the rego engine: the handlers evaluate those with Rego, under its lock
// (see RegoRules). ConfigWatcher and Static implement it.
type RegoSource interface {
	EvaluatorSource
	// Rego returns the Rego side, or nil when there is none (then a
	// configuration with a rule on rego must never be in force).
	Rego() *RegoRules
}

// Static is an EvaluatorSource that always gives the same evaluator and,
// when R is set, evaluates the rules E's configuration puts on rego with
// R, whose configuration the caller sets (R.SetConfig) to the same.
type Static struct {
	E *rules.Evaluator
	R *RegoRules
}

// Evaluator implements EvaluatorSource.
func (s Static) Evaluator() *rules.Evaluator { return s.E }

// Rego implements RegoSource.
func (s Static) Rego() *RegoRules { return s.R }

// ConfigWatcher keeps an evaluator in step with a configuration file. The
// file must hold a valid configuration when the watcher is made; after
// that a change is loaded when the file system reports it or at the next
// periodic check, whichever comes first, and takes effect atomically. A
// change that is not a valid configuration is logged, every problem on its
// own line, and ignored: the previous configuration stays in force until
// the file is fixed.
//
// Rules on the rego engine need a RegoRules (WithRego): a configuration
// with one is refused by a watcher without. The RegoRules' configuration
// changes with the Go rules', atomically for requests.
//
// ConfigWatcher is a controller-runtime Runnable (Start) and is safe for
// concurrent use.
type ConfigWatcher struct {
	path      string
	interval  time.Duration
	log       logr.Logger
	namespace string // podwall's own, for warnExemptions
	rego      *RegoRules

	cur        atomic.Pointer[rules.Evaluator]
	generation atomic.Int64

	mu         sync.Mutex
	loadedSum  [sha256.Size]byte // of the configuration in force
	failedSum  [sha256.Size]byte // of the last content that failed, not to log it again
	failedErr  string
	onChange   []func(*rules.Evaluator)
	lastResult error
}

// ConfigWatcherOption configures a ConfigWatcher.
type ConfigWatcherOption func(*ConfigWatcher)

// WithRego lets the configurations put rules on the rego engine, evaluated
// by r. The watcher sets r's configuration.
func WithRego(r *RegoRules) ConfigWatcherOption {
	return func(w *ConfigWatcher) { w.rego = r }
}

// NewConfigWatcher loads path, which must hold a valid configuration.
// interval is the periodic check (0: DefaultConfigCheckInterval; negative:
// notifications only).
func NewConfigWatcher(path string, interval time.Duration, log logr.Logger, opts ...ConfigWatcherOption) (*ConfigWatcher, error) {
	if interval == 0 {
		interval = DefaultConfigCheckInterval
	}
	w := &ConfigWatcher{path: path, interval: interval, log: log}
	for _, o := range opts {
		o(w)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("configuration %s: %w", path, unwrapPathError(err))
	}
	e, err := w.compile(data)
	if err != nil {
		return nil, err
	}
	// The cache has not started: requests wait for the Rego rules' copy
	// of the cluster (readiness too) rather than this.
	if err := w.install(e, false); err != nil {
		return nil, err
	}
	w.loadedSum = sha256.Sum256(data)
	configGeneration.Set(float64(w.generation.Add(1)))
	return w, nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (w *ConfigWatcher) compile(data []byte) (*rules.Evaluator, error) {
	cfg, err := config.Parse(data, w.path)
	if err != nil {
		return nil, err
	}
	if w.rego == nil {
		if bad := regoRules(cfg); len(bad) > 0 {
			msgs := make([]string, len(bad))
			for i, r := range bad {
				msgs[i] = fmt.Sprintf("rules.%s.engine: %q needs the Rego rules, which this watcher has none of: refusing the configuration rather than leaving the rule unenforced", r.name, config.EngineRego)
			}
			return nil, fmt.Errorf("%s: %s", w.path, strings.Join(msgs, "; "))
		}
	}
	e, err := rules.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", w.path, err)
	}
	return e, nil
}

// install makes e the evaluator in force, and its rego rules the Rego
// side's, at once.
func (w *ConfigWatcher) install(e *rules.Evaluator, waitSync bool) error {
	if w.rego == nil {
		w.cur.Store(e)
		return nil
	}
	if err := w.rego.setConfig(context.Background(), e.Config(), waitSync, func() { w.cur.Store(e) }); err != nil {
		return fmt.Errorf("%s: the Rego rules: %w", w.path, err)
	}
	return nil
}

// Rego implements RegoSource.
func (w *ConfigWatcher) Rego() *RegoRules { return w.rego }

// Evaluator implements EvaluatorSource: the evaluator of the configuration
// in force.
func (w *ConfigWatcher) Evaluator() *rules.Evaluator { return w.cur.Load() }

// Generation is the number of configurations loaded: 1 after
// NewConfigWatcher, one more for each change that took effect.
func (w *ConfigWatcher) Generation() int64 { return w.generation.Load() }

// LastError returns the error of the last reload attempt, nil when it
// succeeded or the file has not changed since.
func (w *ConfigWatcher) LastError() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastResult
}

// OnChange registers f, called (from the watcher's goroutine) with the new
// evaluator after each change that takes effect.
func (w *ConfigWatcher) OnChange(f func(*rules.Evaluator)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.onChange = append(w.onChange, f)
}

// Reload reads the file now. It reports whether a new configuration took
// effect; the error says why a changed file was not loaded (the previous
// configuration stays in force). An unchanged file is a no-op.
func (w *ConfigWatcher) Reload() (bool, error) {
	w.mu.Lock()
	data, err := os.ReadFile(w.path)
	if err != nil {
		err = fmt.Errorf("configuration %s: %w", w.path, unwrapPathError(err))
		first := w.failedErr != err.Error()
		w.failedErr, w.failedSum, w.lastResult = err.Error(), [sha256.Size]byte{}, err
		w.mu.Unlock()
		if first {
			configReloads.WithLabelValues("failure").Inc()
			w.log.Error(err, "cannot read the configuration file; keeping the configuration in force", "file", w.path, "generation", w.Generation())
		}
		return false, err
	}
	sum := sha256.Sum256(data)
	if sum == w.loadedSum {
		w.failedErr, w.failedSum, w.lastResult = "", [sha256.Size]byte{}, nil
		w.mu.Unlock()
		return false, nil
	}
	if sum == w.failedSum {
		err := w.lastResult
		w.mu.Unlock()
		return false, err // already reported
	}
	e, err := w.compile(data)
	if err == nil {
		err = w.install(e, true)
	}
	if err != nil {
		w.failedSum, w.failedErr, w.lastResult = sum, err.Error(), err
		w.mu.Unlock()
		configReloads.WithLabelValues("failure").Inc()
		w.logInvalid(err)
		return false, err
	}
	w.loadedSum, w.failedSum, w.failedErr, w.lastResult = sum, [sha256.Size]byte{}, "", nil
	gen := w.generation.Add(1)
	callbacks := slices.Clone(w.onChange)
	w.mu.Unlock()
	configGeneration.Set(float64(gen))
	configReloads.WithLabelValues("success").Inc()
	w.log.Info("configuration reloaded", "file", w.path, "generation", gen, "rules", e.Rules(), "regoRules", RegoRuleNames(e.Config()))
	warnExemptions(w.log, e, w.namespace)
	for _, f := range callbacks {
		f(e)
	}
	return true, nil
}

// logInvalid logs every problem of an invalid configuration, one entry
// each, and a summary.
func (w *ConfigWatcher) logInvalid(err error) {
	var ce *config.Error
	problems := []error{err}
	if errors.As(err, &ce) && len(ce.Errs) > 0 {
		problems = ce.Errs
	}
	for i, p := range problems {
		w.log.Error(p, "invalid configuration", "file", w.path, "problem", i+1, "of", len(problems))
	}
	w.log.Error(err, "configuration change ignored: the previous configuration stays in force until the file is fixed",
		"file", w.path, "generation", w.Generation(), "problems", len(problems))
}

// warnExemptions logs a configuration that does not exempt the namespace
// podwall runs in, which could keep podwall's own pods from starting.
func warnExemptions(log logr.Logger, e *rules.Evaluator, namespace string) {
	if namespace == "" {
		return
	}
	if !slices.Contains(e.Config().ExemptNamespaces, namespace) {
		log.Info("WARNING: the configuration does not exempt podwall's own namespace; with failurePolicy Fail its pods may be refused by their own webhook",
			"namespace", namespace, "exemptNamespaces", e.Config().ExemptNamespaces)
	}
}

// Start watches the file until ctx ends. It implements controller-runtime's
// Runnable.
func (w *ConfigWatcher) Start(ctx context.Context) error {
	watchFiles(ctx, w.log, "configuration file", w.path, []string{filepath.Dir(w.path)}, w.interval, func() { _, _ = w.Reload() })
	return nil
}

// watchFiles calls reload when the file system reports a change in one of
// dirs and every interval (if positive), until ctx ends. Directories are
// watched rather than files: editors and ConfigMap volumes replace a file
// (or a symlink to it) rather than write it in place. A burst of events (a
// ConfigMap update renames several entries) is folded into one reload
// shortly after the last. Without notifications the periodic checks
// remain.
func watchFiles(ctx context.Context, log logr.Logger, what, path string, dirs []string, interval time.Duration, reload func()) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	fw, err := fsnotify.NewWatcher()
	if err == nil {
		for _, d := range dirs {
			if err = fw.Add(d); err != nil {
				fw.Close()
				break
			}
		}
	}
	if err != nil {
		log.Error(err, "cannot watch the "+what+" for changes; relying on periodic checks", "path", path, "interval", interval)
	} else {
		defer fw.Close()
		events, errs = fw.Events, fw.Errors
	}
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			debounce.Reset(100 * time.Millisecond)
		case err := <-errs:
			log.Error(err, what+" watch error", "path", path)
		case <-debounce.C:
			reload()
		case <-tick:
			reload()
		}
	}
}

// NeedLeaderElection implements controller-runtime's
// LeaderElectionRunnable: every replica follows the file.
func (w *ConfigWatcher) NeedLeaderElection() bool { return false }

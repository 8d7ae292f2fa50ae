package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
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

// Static is an EvaluatorSource that always gives the same evaluator.
type Static struct{ E *rules.Evaluator }

// Evaluator implements EvaluatorSource.
func (s Static) Evaluator() *rules.Evaluator { return s.E }

// ConfigWatcher keeps an evaluator in step with a configuration file. The
// file must hold a valid configuration when the watcher is made; after
// that a change is loaded when the file system reports it or at the next
// periodic check, whichever comes first, and takes effect atomically. A
// change that is not a valid configuration is logged, every problem on its
// own line, and ignored: the previous configuration stays in force until
// the file is fixed.
//
// ConfigWatcher is a controller-runtime Runnable (Start) and is safe for
// concurrent use.
type ConfigWatcher struct {
	path      string
	interval  time.Duration
	log       logr.Logger
	namespace string // podwall's own, for warnExemptions

	cur        atomic.Pointer[rules.Evaluator]
	generation atomic.Int64

	mu         sync.Mutex
	loadedSum  [sha256.Size]byte // of the configuration in force
	failedSum  [sha256.Size]byte // of the last content that failed, not to log it again
	failedErr  string
	onChange   []func(*rules.Evaluator)
	lastResult error
}

// NewConfigWatcher loads path, which must hold a valid configuration.
// interval is the periodic check (0: DefaultConfigCheckInterval; negative:
// notifications only).
func NewConfigWatcher(path string, interval time.Duration, log logr.Logger) (*ConfigWatcher, error) {
	if interval == 0 {
		interval = DefaultConfigCheckInterval
	}
	w := &ConfigWatcher{path: path, interval: interval, log: log}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("configuration %s: %w", path, unwrapPathError(err))
	}
	e, err := compile(data, path)
	if err != nil {
		return nil, err
	}
	w.loadedSum = sha256.Sum256(data)
	w.cur.Store(e)
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

func compile(data []byte, name string) (*rules.Evaluator, error) {
	cfg, err := config.Parse(data, name)
	if err != nil {
		return nil, err
	}
	if bad := unsupportedEngines(cfg); len(bad) > 0 {
		return nil, fmt.Errorf("%s: %s", name, strings.Join(bad, "; "))
	}
	e, err := rules.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return e, nil
}

// unsupportedEngines lists the configured rules whose engine the webhook
// does not run (only go): it refuses such a configuration rather than
// admit everything those rules would check.
func unsupportedEngines(cfg *config.AdmissionConfiguration) []string {
	var bad []string
	rv := reflect.ValueOf(cfg.Rules)
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Field(i)
		if f.Kind() != reflect.Pointer || f.IsNil() {
			continue
		}
		common := f.Elem().FieldByName("Common")
		if !common.IsValid() {
			continue
		}
		c, ok := common.Interface().(config.Common)
		if !ok || c.Engine == "" || c.Engine == config.EngineGo {
			continue
		}
		name, _, _ := strings.Cut(rv.Type().Field(i).Tag.Get("json"), ",")
		bad = append(bad, fmt.Sprintf("rules.%s.engine: %q is not supported by the webhook yet (only %q): refusing the configuration rather than leaving the rule unenforced", name, c.Engine, config.EngineGo))
	}
	return bad
}

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
	e, err := compile(data, w.path)
	if err != nil {
		w.failedSum, w.failedErr, w.lastResult = sum, err.Error(), err
		w.mu.Unlock()
		configReloads.WithLabelValues("failure").Inc()
		w.logInvalid(err)
		return false, err
	}
	w.loadedSum, w.failedSum, w.failedErr, w.lastResult = sum, [sha256.Size]byte{}, "", nil
	w.cur.Store(e)
	gen := w.generation.Add(1)
	callbacks := slices.Clone(w.onChange)
	w.mu.Unlock()
	configGeneration.Set(float64(gen))
	configReloads.WithLabelValues("success").Inc()
	w.log.Info("configuration reloaded", "file", w.path, "generation", gen, "rules", e.Rules())
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
	var events <-chan fsnotify.Event
	var errs <-chan error
	fw, err := fsnotify.NewWatcher()
	if err == nil {
		// Watch the directory: editors and ConfigMap volumes replace the
		// file (or a symlink to it) rather than write it in place.
		if err = fw.Add(filepath.Dir(w.path)); err != nil {
			fw.Close()
		}
	}
	if err != nil {
		w.log.Error(err, "cannot watch the configuration file for changes; relying on periodic checks", "file", w.path, "interval", w.interval)
	} else {
		defer fw.Close()
		events, errs = fw.Events, fw.Errors
	}
	var tick <-chan time.Time
	if w.interval > 0 {
		t := time.NewTicker(w.interval)
		defer t.Stop()
		tick = t.C
	}
	// A burst of events (a ConfigMap update renames several entries) is
	// folded into one reload shortly after the last.
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-events:
			debounce.Reset(100 * time.Millisecond)
		case err := <-errs:
			w.log.Error(err, "configuration file watch error", "file", w.path)
		case <-debounce.C:
			_, _ = w.Reload()
		case <-tick:
			_, _ = w.Reload()
		}
	}
}

// NeedLeaderElection implements controller-runtime's
// LeaderElectionRunnable: every replica follows the file.
func (w *ConfigWatcher) NeedLeaderElection() bool { return false }

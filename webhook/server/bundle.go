package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"

	regorules "github.com/podwall/podwall/rules"
)

// LoadBundle reads the Rego bundle at path with OPA's bundle reader, and
// returns it with a digest of what it read. path is either a gzipped
// tarball as `opa build` writes it, or a directory as `opa build -b` reads
// it: a .manifest, Rego modules and data.json/data.yaml files, with
// *_test.rego left out (as `--ignore '*_test.rego'` does) and so are
// entries whose name starts with ".." (a ConfigMap volume's own). Symbolic
// links are followed. The modules are parsed, not compiled.
func LoadBundle(path string) (*bundle.Bundle, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	fi, err := os.Stat(path)
	if err != nil {
		return nil, sum, fmt.Errorf("bundle %s: %w", path, unwrapPathError(err))
	}
	if !fi.IsDir() {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, sum, fmt.Errorf("bundle %s: %w", path, unwrapPathError(err))
		}
		b, err := regorules.ReadBundle(bytes.NewReader(data))
		if err != nil {
			return nil, sum, fmt.Errorf("bundle %s: %w", path, err)
		}
		return b, sha256.Sum256(data), nil
	}
	// The loader does not descend into a root that is a symbolic link
	// (git-sync's, say).
	root, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, sum, fmt.Errorf("bundle %s: %w", path, unwrapPathError(err))
	}
	if sum, err = digestDir(root); err != nil {
		return nil, sum, fmt.Errorf("bundle %s: %w", path, err)
	}
	loader := bundle.NewDirectoryLoader(root).WithFilter(skipBundleEntry).WithFollowSymlinks(true)
	b, err := bundle.NewCustomReader(loader).
		WithRegoVersion(ast.RegoV1).
		WithCapabilities(regorules.Capabilities()).
		Read()
	if err != nil {
		return nil, sum, fmt.Errorf("bundle %s: %w", path, err)
	}
	return &b, sum, nil
}

// skipBundleEntry leaves tests and ConfigMap bookkeeping out of a bundle
// directory.
func skipBundleEntry(_ string, info fs.FileInfo, _ int) bool {
	name := info.Name()
	return strings.HasPrefix(name, "..") || (!info.IsDir() && strings.HasSuffix(name, "_test.rego"))
}

// bundleFile reports whether OPA's bundle reader uses a file of this name.
func bundleFile(name string) bool {
	for _, suffix := range []string{".rego", ".json", ".yaml", ".yml", ".manifest"} {
		if strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return false
}

// digestDir hashes the names and contents of the files LoadBundle reads
// in root, to tell a changed bundle directory from an unchanged one
// without parsing it.
func digestDir(root string) ([sha256.Size]byte, error) {
	h := sha256.New()
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if skipBundleEntry(p, info, 0) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() && bundleFile(d.Name()) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	slices.Sort(files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return [sha256.Size]byte{}, err
		}
		rel, _ := filepath.Rel(root, f)
		fmt.Fprintf(h, "%s\x00%d\x00", rel, len(data))
		h.Write(data)
	}
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// BundleWatcher keeps the Rego rules' bundle in step with a bundle file or
// directory (see LoadBundle), as ConfigWatcher does with the
// configuration: a change is loaded when the file system reports it or at
// the next periodic check, compiled, and takes effect atomically
// (evaluations already running finish with the previous bundle). A bundle
// that cannot be read or does not compile is logged, each compiler error
// on its own line, counted in podwall_bundle_reloads_total{result="failure"}
// and ignored: the previous bundle stays in force until it is fixed.
//
// BundleWatcher is a controller-runtime Runnable and is safe for concurrent
// use.
type BundleWatcher struct {
	path     string
	interval time.Duration
	rego     *RegoRules
	log      logr.Logger

	mu         sync.Mutex
	loadedSum  [sha256.Size]byte
	failedSum  [sha256.Size]byte
	failedErr  string
	lastResult error
	generation int64
}

// NewBundleWatcher loads the bundle at path into r, which must work: an
// error carries the compiler's messages. interval is the periodic check
// (0: DefaultConfigCheckInterval; negative: notifications only).
func NewBundleWatcher(ctx context.Context, path string, interval time.Duration, r *RegoRules, log logr.Logger) (*BundleWatcher, error) {
	if interval == 0 {
		interval = DefaultConfigCheckInterval
	}
	w := &BundleWatcher{path: path, interval: interval, rego: r, log: log}
	b, sum, err := LoadBundle(path)
	if err != nil {
		return nil, err
	}
	if err := r.ReloadBundle(ctx, b); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", path, err)
	}
	w.loadedSum, w.generation = sum, 1
	log.Info("Rego bundle loaded", "path", path, "revision", r.Revision())
	return w, nil
}

// Generation is the number of bundles loaded: 1 after NewBundleWatcher,
// one more for each change that took effect.
func (w *BundleWatcher) Generation() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.generation
}

// LastError returns the error of the last reload attempt, nil when it
// succeeded or nothing has changed since.
func (w *BundleWatcher) LastError() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastResult
}

// Reload reads the bundle now. It reports whether a new bundle took
// effect; the error says why a changed one did not (the previous bundle
// stays in force). An unchanged bundle is a no-op.
func (w *BundleWatcher) Reload(ctx context.Context) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	b, sum, err := LoadBundle(w.path)
	if err == nil && sum == w.loadedSum {
		w.failedSum, w.failedErr, w.lastResult = [sha256.Size]byte{}, "", nil
		return false, nil
	}
	if err == nil && sum == w.failedSum {
		return false, w.lastResult // already reported
	}
	if err == nil {
		if err = w.rego.ReloadBundle(ctx, b); err != nil {
			err = fmt.Errorf("bundle %s: %w", w.path, err)
		}
	}
	if err != nil {
		first := err.Error() != w.failedErr
		w.failedSum, w.failedErr, w.lastResult = sum, err.Error(), err
		if first {
			bundleReloads.WithLabelValues("failure").Inc()
			problems := compileErrors(err)
			for i, p := range problems {
				w.log.Error(errors.New(p), "invalid Rego bundle", "path", w.path, "problem", i+1, "of", len(problems))
			}
			w.log.Error(err, "Rego bundle change ignored: the previous bundle stays in force until it is fixed",
				"path", w.path, "revision", w.rego.Revision(), "problems", len(problems))
		}
		return false, err
	}
	w.loadedSum, w.failedSum, w.failedErr, w.lastResult = sum, [sha256.Size]byte{}, "", nil
	w.generation++
	bundleReloads.WithLabelValues("success").Inc()
	w.log.Info("Rego bundle reloaded", "path", w.path, "revision", w.rego.Revision(), "generation", w.generation)
	return true, nil
}

// Start watches the bundle until ctx ends. It implements
// controller-runtime's Runnable.
func (w *BundleWatcher) Start(ctx context.Context) error {
	dirs := []string{filepath.Dir(w.path)}
	if fi, err := os.Stat(w.path); err == nil && fi.IsDir() {
		// Changes deeper down are found by the periodic check: the
		// notifications are not recursive.
		dirs = append(dirs, w.path)
	}
	watchFiles(ctx, w.log, "Rego bundle", w.path, dirs, w.interval, func() { _, _ = w.Reload(ctx) })
	return nil
}

// NeedLeaderElection implements controller-runtime's
// LeaderElectionRunnable: every replica follows the bundle.
func (w *BundleWatcher) NeedLeaderElection() bool { return false }

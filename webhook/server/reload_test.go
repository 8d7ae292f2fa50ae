package server_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/podwall/podwall/webhook/config"
	"github.com/podwall/podwall/webhook/rules"
	"github.com/podwall/podwall/webhook/server"
)

// logSink collects log lines.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (s *logSink) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.lines = append(s.lines, prefix+" "+args)
	}, funcr.Options{Verbosity: 1})
}

func (s *logSink) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

const hygieneOnly = "apiVersion: podwall.io/v1alpha1\nkind: AdmissionConfiguration\nrules:\n  networkPolicyHygiene: {}\n"

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConfigWatcherReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "podwall.yaml")
	atomicWrite(t, path, readFile(t, "testdata/seed.yaml"))
	var logs logSink
	w, err := server.NewConfigWatcher(path, -1, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	if got := w.Evaluator().Rules(); len(got) != 3 || w.Generation() != 1 {
		t.Fatalf("rules %v, generation %d", got, w.Generation())
	}
	var changes []*rules.Evaluator
	w.OnChange(func(e *rules.Evaluator) { changes = append(changes, e) })

	// Unchanged: nothing happens.
	if changed, err := w.Reload(); changed || err != nil {
		t.Fatalf("unchanged file: %v %v", changed, err)
	}
	// A valid change takes effect.
	atomicWrite(t, path, []byte(hygieneOnly))
	if changed, err := w.Reload(); !changed || err != nil {
		t.Fatalf("valid change: %v %v", changed, err)
	}
	if got := w.Evaluator().Rules(); len(got) != 1 || got[0] != config.RuleNetworkPolicyHygiene || w.Generation() != 2 || len(changes) != 1 {
		t.Fatalf("after reload: rules %v, generation %d, %d callbacks", got, w.Generation(), len(changes))
	}
	// An invalid change is refused, every problem logged, the old
	// configuration kept.
	before := w.Evaluator()
	bad := "apiVersion: podwall.io/v1alpha1\nkind: AdmissionConfiguration\nrules:\n  defaultDeny:\n    enforcementAction: block\n    policyTypes: [Sideways]\n"
	atomicWrite(t, path, []byte(bad))
	changed, err := w.Reload()
	if changed || err == nil || w.Evaluator() != before || w.Generation() != 2 {
		t.Fatalf("invalid change: changed %v, err %v, generation %d", changed, err, w.Generation())
	}
	text := logs.text()
	for _, want := range []string{
		`"problem"=1 "of"=2`, `rules.defaultDeny.enforcementAction: Unsupported value: \"block\"`,
		`"problem"=2 "of"=2`, `rules.defaultDeny.policyTypes[0]: Unsupported value: \"Sideways\"`,
		"configuration change ignored: the previous configuration stays in force",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("log lacks %s:\n%s", want, text)
		}
	}
	// The same bad content is not reported again.
	n := strings.Count(logs.text(), "configuration change ignored")
	if _, err := w.Reload(); err == nil || strings.Count(logs.text(), "configuration change ignored") != n {
		t.Errorf("bad content reported twice")
	}
	// A missing file keeps the configuration too.
	os.Remove(path)
	if changed, err := w.Reload(); changed || err == nil || !strings.Contains(err.Error(), "no such file") || w.Evaluator() != before {
		t.Errorf("missing file: %v %v", changed, err)
	}
	// Fixed: takes effect.
	atomicWrite(t, path, readFile(t, "testdata/seed.yaml"))
	if changed, err := w.Reload(); !changed || err != nil || w.Generation() != 3 || w.LastError() != nil {
		t.Fatalf("fixed: %v %v", changed, err)
	}
}

func TestConfigWatcherStartInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "podwall.yaml")
	atomicWrite(t, path, []byte("apiVersion: podwall.io/v1alpha1\nkind: AdmissionConfiguration\nrulez: {}\n"))
	_, err := server.NewConfigWatcher(path, 0, logr.Discard())
	if err == nil || !strings.Contains(err.Error(), `unknown field "rulez"`) {
		t.Errorf("err = %v", err)
	}
	// A rule a watcher without Rego rules cannot evaluate is refused, not
	// left unenforced.
	atomicWrite(t, path, []byte("apiVersion: podwall.io/v1alpha1\nkind: AdmissionConfiguration\nrules:\n  networkPolicyHygiene: {engine: rego}\n"))
	_, err = server.NewConfigWatcher(path, 0, logr.Discard())
	if err == nil || !strings.Contains(err.Error(), `rules.networkPolicyHygiene.engine: "rego" needs the Rego rules, which this watcher has none of`) {
		t.Errorf("rego engine: %v", err)
	}
	_, err = server.NewConfigWatcher(filepath.Join(t.TempDir(), "nope.yaml"), 0, logr.Discard())
	if err == nil || !strings.Contains(err.Error(), "nope.yaml: no such file or directory") {
		t.Errorf("err = %v", err)
	}
}

// TestConfigWatcherConfigMapSwap: a ConfigMap volume updates by pointing
// the ..data symlink at a new directory; the watcher notices through
// file-system events alone (no periodic check here).
func TestConfigWatcherConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	writeVersion := func(name string, content []byte) {
		vdir := filepath.Join(dir, name)
		if err := os.Mkdir(vdir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(vdir, "podwall.yaml"), content, 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	writeVersion("..v1", readFile(t, "testdata/seed.yaml"))
	if err := os.Symlink("..data/podwall.yaml", filepath.Join(dir, "podwall.yaml")); err != nil {
		t.Fatal(err)
	}
	w, err := server.NewConfigWatcher(filepath.Join(dir, "podwall.yaml"), -1, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Start(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	time.Sleep(100 * time.Millisecond) // let the watch start
	writeVersion("..v2", []byte(hygieneOnly))
	deadline := time.Now().Add(10 * time.Second)
	for w.Generation() != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the swap was not picked up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := w.Evaluator().Rules(); len(got) != 1 {
		t.Errorf("rules = %v", got)
	}
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podwall/podwall/manifest"
)

// Defaults of ManifestSource.
const (
	DefaultSettle = 20 * time.Millisecond
	DefaultPoll   = 2 * time.Second
)

// ManifestSource feeds the objects of manifest files and directories to an
// agent, and the changes whenever the files change: a file system watcher
// notices them (a poll catches what it misses), and after a quiet Settle
// period the source reloads the paths as manifest.Load does, compares the
// objects with what it fed before and feeds the differences as one batch.
// Each file is read with manifest.Load and kept until its size,
// modification time or inode changes, so a change costs the files that
// changed (and merging every file's objects), not a parse of them all.
//
// A load that fails (malformed YAML, an unknown field, two definitions of
// one object) is reported through the sink and changes nothing: the agent
// keeps the last good state, and until a first load succeeds the source is
// not synced, so the agent never applies rules from no manifests at all.
// Writers should replace files atomically (write elsewhere, then rename),
// as Kubernetes does for ConfigMap volumes; a half-written file is reported
// and picked up again when the write completes.
type ManifestSource struct {
	// Paths are manifest files and directories (recursive: *.yaml, *.yml
	// and *.json, skipping names starting with "."), as manifest.Load
	// reads them. Required.
	Paths []string
	// Settle is how long the source waits after a file system event for
	// more before it reloads. Default 20ms.
	Settle time.Duration
	// Poll is how often the source checks the files for a change the
	// watcher missed. Default 2s; negative disables the poll.
	Poll time.Duration
	// OnLoad, when set, is called after every load attempt.
	OnLoad func(LoadResult)

	mu     sync.Mutex // serialises loads
	sink   Sink
	fp     string // fingerprint of the files at the last load attempt
	cache  map[string]cachedFile
	synced bool
	prev   manifestState
	dirs   map[string]bool // watched
	w      *fsnotify.Watcher
}

// LoadResult describes one load of a ManifestSource.
type LoadResult struct {
	// Objects is how many pods, namespaces, nodes and NetworkPolicies the
	// manifests hold; Changed how many changes were fed to the agent.
	Objects, Changed int
	// Generation is the agent's generation after feeding: once
	// Agent.WaitApplied(Generation) returns, the kernel holds the load.
	Generation uint64
	// Duration is how long loading and feeding took.
	Duration time.Duration
	// Err is why the load failed; then nothing was fed.
	Err error
}

// Name returns "manifests".
func (s *ManifestSource) Name() string { return "manifests" }

type manifestState struct {
	pods       map[types.NamespacedName]*corev1.Pod
	namespaces map[string]*corev1.Namespace
	nodes      map[string]*corev1.Node
	policies   map[types.NamespacedName]*networkingv1.NetworkPolicy
}

func (st *manifestState) len() int {
	return len(st.pods) + len(st.namespaces) + len(st.nodes) + len(st.policies)
}

// Run loads the manifests, says Synced after the first load that succeeds,
// then reloads on every change until ctx is done.
func (s *ManifestSource) Run(ctx context.Context, sink Sink) error {
	if len(s.Paths) == 0 {
		return errors.New("no manifest paths")
	}
	settle := s.Settle
	if settle <= 0 {
		settle = DefaultSettle
	}
	poll := s.Poll
	if poll == 0 {
		poll = DefaultPoll
	}

	s.mu.Lock()
	s.sink = sink
	s.dirs = map[string]bool{}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		sink.Error(fmt.Errorf("watching manifests: %w (polling every %v instead)", err, poll))
		if poll < 0 {
			poll = DefaultPoll
		}
	} else {
		s.w = w
		defer w.Close()
	}
	s.mu.Unlock()

	s.load(true)

	var events <-chan fsnotify.Event
	var werrs <-chan error
	if w != nil {
		events, werrs = w.Events, w.Errors
	}
	var tick <-chan time.Time
	if poll > 0 {
		t := time.NewTicker(poll)
		defer t.Stop()
		tick = t.C
	}
	settleTimer := time.NewTimer(time.Hour)
	settleTimer.Stop()
	defer settleTimer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			settleTimer.Reset(settle)
		case err, ok := <-werrs:
			if !ok {
				werrs = nil
				continue
			}
			sink.Error(fmt.Errorf("watching manifests: %w", err))
		case <-settleTimer.C:
			s.load(false)
		case <-tick:
			s.load(false)
		}
	}
}

// Reload loads the manifests now, even when the files look unchanged, and
// feeds the differences. It fails before Run has started.
func (s *ManifestSource) Reload() LoadResult {
	s.mu.Lock()
	started := s.sink != nil
	s.mu.Unlock()
	if !started {
		return LoadResult{Err: errors.New("manifest source not running")}
	}
	return s.load(true)
}

// load reloads every path when the files changed since the last attempt
// (or force), feeds the differences and reports.
func (s *ManifestSource) load(force bool) LoadResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	files, scanErr := s.scan()
	var fp strings.Builder
	for _, f := range files {
		fp.WriteString(f.path + ":" + f.stamp + "\n")
	}
	if scanErr != nil {
		fp.WriteString(scanErr.Error())
	}
	if !force && fp.String() == s.fp {
		return LoadResult{Objects: s.prev.len(), Generation: s.sink.Generation()}
	}
	s.fp = fp.String()
	res := s.loadLocked(files, scanErr)
	res.Duration = time.Since(start)
	if res.Err != nil {
		s.sink.Error(res.Err)
	}
	if s.OnLoad != nil {
		s.OnLoad(res)
	}
	return res
}

// cachedFile is one file's objects, as of its stamp.
type cachedFile struct {
	stamp string
	set   *manifest.Set
}

// read reads files as manifest.Load(s.Paths...) does, each through
// manifest.Load and merged in order, reusing the files whose stamp has
// not changed.
func (s *ManifestSource) read(files []stampedFile, scanErr error) (*manifest.Set, error) {
	if scanErr != nil {
		// manifest.Load names the problem as every other command does.
		if _, err := manifest.Load(s.Paths...); err != nil {
			return nil, err
		}
		return nil, scanErr
	}
	next := make(map[string]cachedFile, len(files))
	set := &manifest.Set{}
	for _, f := range files {
		c, ok := s.cache[f.path]
		if !ok || c.stamp != f.stamp {
			part, err := manifest.Load(f.path)
			if err != nil {
				return nil, err
			}
			c = cachedFile{stamp: f.stamp, set: part}
		}
		next[f.path] = c
		if err := set.Merge(c.set); err != nil {
			return nil, err
		}
	}
	s.cache = next
	return set, nil
}

func (s *ManifestSource) loadLocked(files []stampedFile, scanErr error) LoadResult {
	s.watchDirs()
	set, err := s.read(files, scanErr)
	var pods []*corev1.Pod
	if err == nil {
		pods, err = set.AllPods()
	}
	if err != nil {
		what := "loading manifests"
		if s.synced {
			what = "reloading manifests (the last good state stays in force)"
		}
		return LoadResult{Objects: s.prev.len(), Generation: s.sink.Generation(), Err: fmt.Errorf("%s: %w", what, err)}
	}
	next := manifestState{
		pods:       map[types.NamespacedName]*corev1.Pod{},
		namespaces: map[string]*corev1.Namespace{},
		nodes:      map[string]*corev1.Node{},
		policies:   map[types.NamespacedName]*networkingv1.NetworkPolicy{},
	}
	for _, p := range pods {
		next.pods[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}] = p
	}
	for _, ns := range set.Namespaces {
		next.namespaces[ns.Name] = ns
	}
	for _, n := range set.Nodes {
		next.nodes[n.Name] = n
	}
	for _, np := range set.NetworkPolicies {
		next.policies[types.NamespacedName{Namespace: np.Namespace, Name: np.Name}] = np
	}
	changed := 0
	s.sink.Batch(func() {
		changed += feed(s.prev.namespaces, next.namespaces, s.sink.SetNamespace, func(k string) { s.sink.DeleteNamespace(k) })
		changed += feed(s.prev.nodes, next.nodes, s.sink.SetNode, func(k string) { s.sink.DeleteNode(k) })
		changed += feed(s.prev.pods, next.pods, s.sink.SetPod, func(k types.NamespacedName) { s.sink.DeletePod(k.Namespace, k.Name) })
		changed += feed(s.prev.policies, next.policies, s.sink.SetPolicy, func(k types.NamespacedName) { s.sink.DeletePolicy(k.Namespace, k.Name) })
	})
	s.prev = next
	if !s.synced {
		s.synced = true
		s.sink.Synced()
	}
	return LoadResult{Objects: next.len(), Changed: changed, Generation: s.sink.Generation()}
}

// feed sets what is new or changed in next and deletes what is gone.
func feed[K comparable, V any](prev, next map[K]V, set func(V), del func(K)) int {
	n := 0
	for k := range prev {
		if _, ok := next[k]; !ok {
			del(k)
			n++
		}
	}
	for k, v := range next {
		// Objects of files read again are new values; those of unchanged
		// files are the very same.
		if old, ok := prev[k]; ok && (any(old) == any(v) || equality.Semantic.DeepEqual(old, v)) {
			continue
		}
		set(v)
		n++
	}
	return n
}

// watchDirs adds a watch on every directory named (recursively) and on the
// parent of every file named, so that creations and renames are seen.
func (s *ManifestSource) watchDirs() {
	if s.w == nil {
		return
	}
	add := func(dir string) {
		if s.dirs[dir] {
			return
		}
		if err := s.w.Add(dir); err != nil {
			s.sink.Error(fmt.Errorf("watching %s: %w", dir, err))
			return
		}
		s.dirs[dir] = true
	}
	for _, p := range s.Paths {
		fi, err := os.Stat(p)
		if err != nil || !fi.IsDir() {
			if parent := filepath.Dir(p); dirExists(parent) {
				add(parent)
			}
			continue
		}
		root := walkRoot(p)
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if d.IsDir() {
				if path != root && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				add(path)
			}
			return nil
		})
	}
}

// walkRoot is where to walk directory p from, as manifest.Load does: a
// symbolic link to a directory resolves with a trailing separator.
func walkRoot(p string) string {
	if li, err := os.Lstat(p); err == nil && li.Mode()&fs.ModeSymlink != 0 {
		return p + string(filepath.Separator)
	}
	return p
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// stampedFile is a file a load reads, with its stamp: size, modification
// time and inode (symbolic links followed, so a ConfigMap volume's swap of
// its data directory shows).
type stampedFile struct{ path, stamp string }

// scan lists the files manifest.Load(s.Paths...) would read, in its order:
// each path, a directory expanded recursively (*.yaml, *.yml, *.json,
// skipping names starting with "."; symbolic links to files followed, to
// directories not), a file reached twice read once.
func (s *ManifestSource) scan() ([]stampedFile, error) {
	var out []stampedFile
	seen := map[string]bool{}
	add := func(path string) error {
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if seen[path] {
			return nil
		}
		seen[path] = true
		var ino uint64
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			ino = st.Ino
		}
		out = append(out, stampedFile{path, fmt.Sprintf("%d:%d:%d", fi.Size(), fi.ModTime().UnixNano(), ino)})
		return nil
	}
	for _, p := range s.Paths {
		p = filepath.Clean(p)
		fi, err := os.Stat(p)
		if err != nil {
			return out, err
		}
		if !fi.IsDir() {
			if err := add(p); err != nil {
				return out, err
			}
			continue
		}
		root := walkRoot(p)
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if path != root && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() || !slices.Contains([]string{".yaml", ".yml", ".json"}, strings.ToLower(filepath.Ext(path))) {
				return nil
			}
			if d.Type()&fs.ModeSymlink != 0 {
				if t, err := os.Stat(path); err == nil && t.IsDir() {
					return nil
				}
			}
			return add(path)
		})
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

package rules

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
)

// policyFiles are the bundle's modules: every Rego source but the tests.
var policyFiles = []string{
	"podwall/admission/admission.rego",
	"podwall/admission/default_deny/default_deny.rego",
	"podwall/admission/netpol_hygiene/netpol_hygiene.rego",
	"podwall/admission/protected_access/protected_access.rego",
	"podwall/admission/required_labels/required_labels.rego",
	"podwall/lib/cluster.rego",
	"podwall/lib/lib.rego",
	"podwall/lib/selectors.rego",
}

func TestBundle(t *testing.T) {
	b, err := Bundle("v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	if b.Manifest.Revision != "v1.2.3" {
		t.Errorf("revision %q", b.Manifest.Revision)
	}
	if b.Manifest.Roots == nil || !slices.Equal(*b.Manifest.Roots, Roots) {
		t.Errorf("roots %v, want %v", b.Manifest.Roots, Roots)
	}
	if v, err := b.RegoVersionForFile("podwall/lib/lib.rego", ast.RegoV0); err != nil || v != ast.RegoV1 {
		t.Errorf("rego version %v %v, want v1", v, err)
	}
	var got []string
	for _, m := range b.Modules {
		got = append(got, m.Path)
		if m.Parsed == nil || len(m.Raw) == 0 {
			t.Errorf("%s: not parsed or empty", m.Path)
		}
	}
	sort.Strings(got)
	if !slices.Equal(got, policyFiles) {
		t.Errorf("modules %v\nwant %v", got, policyFiles)
	}
}

// TestBundleTarball writes the bundle as `opa build` does and reads it back
// with OPA's bundle reader.
func TestBundleTarball(t *testing.T) {
	raw, err := BundleBytes("rev-7")
	if err != nil {
		t.Fatal(err)
	}
	// The tarball's entries, as `tar tzf` shows them.
	gz, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	for _, want := range append([]string{"/.manifest", "/data.json"}, prefixAll("/", policyFiles)...) {
		if !slices.Contains(names, want) {
			t.Errorf("tarball lacks %s: %v", want, names)
		}
	}

	// OPA's reader, as plain as an OPA server's bundle plugin uses it.
	b, err := bundle.NewReader(bytes.NewReader(raw)).Read()
	if err != nil {
		t.Fatal(err)
	}
	if b.Manifest.Revision != "rev-7" || !slices.Equal(*b.Manifest.Roots, Roots) {
		t.Errorf("manifest %v", b.Manifest)
	}
	if len(b.Modules) != len(policyFiles) {
		t.Errorf("%d modules, want %d", len(b.Modules), len(policyFiles))
	}
	// And ReadBundle, which the webhook uses, gives the same.
	b2, err := ReadBundle(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if !b2.Equal(b) {
		t.Error("ReadBundle and bundle.NewReader disagree")
	}
}

func prefixAll(p string, xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = p + x
	}
	return out
}

// TestManifestFile checks the .manifest that `podwall opa build -b rules/`
// reads says what Bundle produces.
func TestManifestFile(t *testing.T) {
	raw, err := os.ReadFile(".manifest")
	if err != nil {
		t.Fatal(err)
	}
	var m bundle.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.Roots == nil || !slices.Equal(*m.Roots, Roots) {
		t.Errorf(".manifest roots %v, want %v", m.Roots, Roots)
	}
}

// TestBuildBundleRefusesBrokenRules: a bundle whose modules do not compile
// is an error naming the compiler's complaint.
func TestBuildBundleRefusesBrokenRules(t *testing.T) {
	fsys := withFiles(t, map[string]string{
		"podwall/lib/broken.rego": "package podwall.lib.broken\n\nx := podwall.no_such_builtin(1)\n",
	})
	_, err := BuildBundle(t.Context(), fsys, "x")
	if err == nil || !strings.Contains(err.Error(), "podwall.no_such_builtin") {
		t.Fatalf("err %v, want one naming podwall.no_such_builtin", err)
	}
}

// usesBuiltins reports whether a module calls a podwall built-in.
func usesBuiltins(m *ast.Module) bool {
	found := false
	ast.WalkTerms(m, func(t *ast.Term) bool {
		if ref, ok := t.Value.(ast.Ref); ok && strings.HasPrefix(ref.String(), BuiltinPrefix) {
			found = true
		}
		return found
	})
	return found
}

// TestStockOPA compiles the rules with a stock OPA's capabilities, without
// the podwall built-ins: the modules that call none compile alone (so a
// stock OPA can evaluate data.podwall.admission.required_labels), and the
// full set fails exactly in the modules that call them.
func TestStockOPA(t *testing.T) {
	srcs := map[string]string{}
	var plain []string
	needs := map[string]bool{}
	for _, path := range policyFiles {
		b, err := fs.ReadFile(Sources(), path)
		if err != nil {
			t.Fatal(err)
		}
		srcs[path] = string(b)
		m, err := ast.ParseModuleWithOpts(path, string(b), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatal(err)
		}
		if usesBuiltins(m) {
			needs[path] = true
		} else {
			plain = append(plain, path)
		}
	}
	wantPlain := []string{
		"podwall/admission/admission.rego",
		"podwall/admission/required_labels/required_labels.rego",
		"podwall/lib/cluster.rego",
		"podwall/lib/lib.rego",
	}
	if !slices.Equal(plain, wantPlain) {
		t.Errorf("modules calling no podwall built-in: %v, want %v (update README.md too)", plain, wantPlain)
	}

	stock := StockCapabilities()
	released, err := ast.LoadCapabilitiesVersion("v1.22.3")
	if err != nil {
		t.Fatal(err)
	}
	for name, caps := range map[string]*ast.Capabilities{"this build without podwall": stock, "OPA v1.22.3 as released": released} {
		only := map[string]string{}
		for _, p := range plain {
			only[p] = srcs[p]
		}
		if err := stockCompile(t, caps, only); err != nil {
			t.Errorf("%s: the modules without built-ins do not compile: %v", name, err)
		}
		err := stockCompile(t, caps, srcs)
		var errs ast.Errors
		if !errors.As(err, &errs) {
			t.Fatalf("%s: the full set compiled without the podwall built-ins (%v)", name, err)
		}
		failed := map[string]bool{}
		for _, e := range errs {
			if e.Location != nil && strings.Contains(e.Message, "undefined function podwall.") {
				failed[e.Location.File] = true
			} else {
				t.Errorf("%s: unexpected error %v", name, e)
			}
		}
		for p := range needs {
			if !failed[p] {
				t.Errorf("%s: %s calls podwall built-ins but compiled", name, p)
			}
		}
	}

	// README.md's table says the same.
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(podwall/[^`]+\\.rego)` \\|[^|]*\\| (yes|no)\\b")
	seen := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		seen[m[1]] = true
		if (m[2] == "yes") != needs[m[1]] {
			t.Errorf("README.md says %s needs the built-ins: %s; it %s", m[1], m[2], map[bool]string{true: "does", false: "does not"}[needs[m[1]]])
		}
	}
	for _, p := range policyFiles {
		if !seen[p] {
			t.Errorf("README.md's table lacks %s", p)
		}
	}
}

// stockCompile compiles Rego sources with the given capabilities,
// reporting every error.
func stockCompile(t testing.TB, caps *ast.Capabilities, srcs map[string]string) error {
	t.Helper()
	mods := map[string]*ast.Module{}
	for p, s := range srcs {
		m, err := ast.ParseModuleWithOpts(p, s, ast.ParserOptions{RegoVersion: ast.RegoV1, Capabilities: caps})
		if err != nil {
			t.Fatal(err)
		}
		mods[p] = m
	}
	c := ast.NewCompiler().WithCapabilities(caps).WithDefaultRegoVersion(ast.RegoV1).SetErrorLimit(0)
	if c.Compile(mods); c.Failed() {
		return c.Errors
	}
	return nil
}

// withFiles is the embedded sources plus extra files.
func withFiles(t testing.TB, extra map[string]string) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(Sources(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(Sources(), p)
		m[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for p, s := range extra {
		m[p] = &fstest.MapFile{Data: []byte(s)}
	}
	return m
}

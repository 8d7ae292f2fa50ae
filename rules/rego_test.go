package rules

import (
	"context"
	"io/fs"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/tester"
)

// testerBuiltins hands the podwall built-ins to OPA's tester without
// registering them globally.
func testerBuiltins() []*tester.Builtin {
	var out []*tester.Builtin
	for _, b := range builtinTable {
		out = append(out, &tester.Builtin{Decl: b.astBuiltin(), Func: rego.FunctionDyn(b.function(), b.impl)})
	}
	return out
}

// sourceModules parses every Rego file of the embedded sources, tests
// included.
func sourceModules(t testing.TB) map[string]*ast.Module {
	t.Helper()
	mods := map[string]*ast.Module{}
	err := fs.WalkDir(Sources(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".rego") {
			return err
		}
		src, err := fs.ReadFile(Sources(), path)
		if err != nil {
			return err
		}
		m, err := ast.ParseModuleWithOpts(path, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return err
		}
		mods[path] = m
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return mods
}

// TestRego runs every *_test.rego through OPA's tester, with the podwall
// built-ins and the tester's defaults (as `podwall opa test rules/` runs
// them: built-in errors make the call undefined), and checks that every rule
// package has tests.
func TestRego(t *testing.T) {
	mods := sourceModules(t)
	runner := tester.NewRunner().
		SetDefaultRegoVersion(ast.RegoV1).
		AddCustomBuiltins(testerBuiltins()).
		SetModules(mods)
	ch, err := runner.RunTests(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tested := map[string]int{}
	for r := range ch {
		name := strings.TrimPrefix(r.Package, "data.") + "." + r.Name
		tested[strings.TrimSuffix(strings.TrimPrefix(r.Package, "data."), "_test")]++
		t.Run(name, func(t *testing.T) {
			switch {
			case r.Error != nil:
				t.Errorf("%s (%s): error: %v", name, r.Location, r.Error)
			case r.Skip:
				t.Skip("skipped")
			case !r.Pass():
				t.Errorf("%s (%s): failed\n%s", name, r.Location, r.Output)
			}
		})
	}
	for _, m := range mods {
		pkg := strings.TrimPrefix(m.Package.Path.String(), "data.")
		if strings.HasPrefix(pkg, "podwall.test") || strings.HasSuffix(pkg, "_test") {
			continue
		}
		if tested[pkg] == 0 {
			t.Errorf("package %s has no Rego tests (want a %s_test package)", pkg, pkg)
		}
	}
}

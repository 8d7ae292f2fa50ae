package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/podwall/podwall/rules"
)

const rulesDir = "../../rules"

// runOPA runs `podwall opa ARGS...` in-process. OPA's commands write to the
// process's standard output and error, so those are swapped for pipes
// while it runs (the tests of this package do not run in parallel).
func runOPA(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	capture := func(f **os.File) (restore func() string) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		old := *f
		*f = w
		done := make(chan string)
		go func() {
			b, _ := io.ReadAll(r)
			done <- string(b)
		}()
		return func() string {
			*f = old
			w.Close()
			return <-done
		}
	}
	restoreOut := capture(&os.Stdout)
	restoreErr := capture(&os.Stderr)
	var out, errOut bytes.Buffer
	code = runCLI(t.Context(), append([]string{"opa"}, args...), strings.NewReader(""), &out, &errOut)
	stdout = restoreOut() + out.String()
	stderr = restoreErr() + errOut.String()
	return code, stdout, stderr
}

// TestOPATestRules is `podwall opa test rules/`: the Rego unit tests pass
// with the podwall built-ins registered.
func TestOPATestRules(t *testing.T) {
	code, out, errOut := runOPA(t, "test", rulesDir)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	m := regexp.MustCompile(`(?m)^PASS: (\d+)/(\d+)$`).FindStringSubmatch(out)
	if m == nil || m[1] != m[2] || m[1] == "0" {
		t.Errorf("output lacks a full PASS line:\n%s", out)
	}
}

// TestOPATestFailureExitStatus: a failing Rego test makes `podwall opa test`
// exit with OPA's status (2), with OPA's report and no podwall error line.
func TestOPATestFailureExitStatus(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x_test.rego"), []byte("package x_test\n\ntest_fails if podwall.selector_matches({\"matchLabels\": {\"a\": \"b\"}}, {})\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runOPA(t, "test", dir)
	if code != 2 || !strings.Contains(out, "FAIL: 1/1") || strings.Contains(errOut, "podwall:") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}

func TestOPAEvalBuiltins(t *testing.T) {
	for query, want := range map[string]string{
		`podwall.selector_matches({"matchLabels": {"access": "true"}}, {"access": "true", "run": "busybox"})`:           "true",
		`podwall.selector_matches({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}, {})`: "true",
		`podwall.ipblock_contains({"cidr": "192.168.2.0/24"}, "192.168.2.101")`:                                         "true",
	} {
		code, out, errOut := runOPA(t, "eval", "--format", "raw", query)
		if code != 0 || strings.TrimSpace(out) != want {
			t.Errorf("opa eval %s: exit %d, stdout %q, stderr %q, want %s", query, code, out, errOut, want)
		}
	}
	// A built-in error is OPA's eval error, and exit status 2.
	// (eval reports it in its output format, on standard output.)
	code, out, errOut := runOPA(t, "eval", "--strict-builtin-errors", `podwall.selector_matches({"matchExpressions": [{"key": "a", "operator": "Foo"}]}, {})`)
	if code != 2 || !strings.Contains(out, "podwall.selector_matches: argument 1 (selector): invalid label selector") || strings.Contains(errOut, "podwall:") {
		t.Errorf("bad selector: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// --fail on an undefined result: exit 1 and nothing from podwall.
	code, _, errOut = runOPA(t, "eval", "--fail", "input.nothing")
	if code != 1 || strings.Contains(errOut, "podwall:") {
		t.Errorf("--fail: exit %d, stderr %q", code, errOut)
	}
}

// TestOPAEvalAdmission evaluates the rules with data and input files, as a
// user debugging a denial would.
func TestOPAEvalAdmission(t *testing.T) {
	dir := t.TempDir()
	input := `{"request": {"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "namespace": "default", "name": "web",
		"object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"}}}}`
	cfg := `{"podwall": {"config": {"rules": {"requiredLabels": {"labels": [{"key": "team"}]}}}}}`
	for name, body := range map[string]string{"input.json": input, "data.json": cfg} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := runOPA(t, "eval", "--format", "raw", "-d", rulesDir+"/podwall", "--ignore", "*_test.rego",
		"-d", filepath.Join(dir, "data.json"), "-i", filepath.Join(dir, "input.json"), "data.podwall.admission.deny")
	if code != 0 || !strings.Contains(out, `Pod default/web: label \"team\" is required`) {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestOPABuildMatchesBundle: `podwall opa build -b .` in rules/ builds the
// same bundle as rules.Bundle (opa build names the files as the path given,
// so from the repository root they would be rules/podwall/...).
func TestOPABuildMatchesBundle(t *testing.T) {
	out := filepath.Join(t.TempDir(), "bundle.tar.gz")
	t.Chdir(rulesDir)
	code, stdout, errOut := runOPA(t, "build", "-b", ".", "--ignore", "*_test.rego", "--revision", "r1", "-o", out)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, errOut)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cli, err := rules.ReadBundle(f)
	if err != nil {
		t.Fatal(err)
	}
	lib, err := rules.Bundle("r1")
	if err != nil {
		t.Fatal(err)
	}
	if cli.Manifest.Revision != "r1" || cli.Manifest.Roots == nil || strings.Join(*cli.Manifest.Roots, ",") != "podwall" {
		t.Errorf("CLI manifest %v", cli.Manifest)
	}
	if len(cli.Modules) != len(lib.Modules) {
		t.Fatalf("CLI bundle has %d modules, rules.Bundle %d", len(cli.Modules), len(lib.Modules))
	}
	byPath := map[string]string{}
	for _, m := range lib.Modules {
		byPath[strings.TrimPrefix(m.Path, "/")] = string(m.Raw)
	}
	for _, m := range cli.Modules {
		p := strings.TrimPrefix(m.Path, "/")
		if raw, ok := byPath[p]; !ok {
			t.Errorf("CLI bundle module %s not in rules.Bundle", p)
		} else if raw != string(m.Raw) {
			t.Errorf("module %s differs between the CLI build and rules.Bundle", p)
		}
	}
}

// TestOPACheckFailureSaysItOnce: a command that prints its own errors
// (opa check) exits 1 without a second podwall error line.
func TestOPACheckFailureSaysItOnce(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.rego"), []byte("package bad\n\nx := podwall.nope(1)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runOPA(t, "check", dir)
	if code != 1 || !strings.Contains(errOut, "podwall.nope") || strings.Contains(errOut, "podwall: ") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

package manifest_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/podwall/podwall/manifest"
)

// describe renders a set as "Kind namespace/name @ source" lines in Objects
// order, which makes whole loads easy to compare in a table.
func describe(t *testing.T, s *manifest.Set) []string {
	t.Helper()
	var out []string
	for _, o := range s.Objects() {
		out = append(out, describeObj(t, o.Obj)+" @ "+o.Source.String())
	}
	return out
}

func describeObj(t *testing.T, obj runtime.Object) string {
	t.Helper()
	acc, err := meta.Accessor(obj)
	if err != nil {
		t.Fatal(err)
	}
	name := acc.GetName()
	if ns := acc.GetNamespace(); ns != "" {
		name = ns + "/" + name
	}
	return obj.GetObjectKind().GroupVersionKind().Kind + " " + name
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name  string
		paths []string
		want  []string
	}{
		{
			name:  "multi-document YAML",
			paths: []string{"testdata/multi.yaml"},
			want: []string{
				"Namespace shop @ testdata/multi.yaml#1",
				"Pod default/web @ testdata/multi.yaml#3",
				"Service shop/web @ testdata/multi.yaml#4",
				"NetworkPolicy shop/deny-all @ testdata/multi.yaml#5",
				"ConfigMap default/settings @ testdata/multi.yaml#6",
				// Custom kinds keep what was written: their scope is unknown.
				"Widget gadget @ testdata/multi.yaml#7",
			},
		},
		{
			name:  "JSON stream",
			paths: []string{"testdata/objects.json"},
			want: []string{
				"Node node-a @ testdata/objects.json#2",
				"Pod shop/client @ testdata/objects.json#1",
			},
		},
		{
			name:  "List kinds, nested and typed",
			paths: []string{"testdata/list.yaml"},
			want: []string{
				"Pod default/api-1 @ testdata/list.yaml#2",
				"Pod other/api-2 @ testdata/list.yaml#2",
				"Service default/api @ testdata/list.yaml#1",
				"NetworkPolicy default/allow-api @ testdata/list.yaml#1",
			},
		},
		{
			name:  "directory, recursive and sorted, hidden and foreign files skipped",
			paths: []string{"testdata/dir"},
			want: []string{
				"Pod default/a @ testdata/dir/a.yaml#1",
				"Pod default/c @ testdata/dir/c.json#1",
				"Pod default/b @ testdata/dir/sub/b.yml#1",
			},
		},
		{
			name:  "a file reached twice is loaded once",
			paths: []string{"testdata/dir/", "testdata/dir/./a.yaml"},
			want: []string{
				"Pod default/a @ testdata/dir/a.yaml#1",
				"Pod default/c @ testdata/dir/c.json#1",
				"Pod default/b @ testdata/dir/sub/b.yml#1",
			},
		},
		{
			name:  "several paths keep argument order within a kind",
			paths: []string{"testdata/objects.json", "testdata/dir/sub/b.yml"},
			want: []string{
				"Node node-a @ testdata/objects.json#2",
				"Pod shop/client @ testdata/objects.json#1",
				"Pod default/b @ testdata/dir/sub/b.yml#1",
			},
		},
		{
			name:  "nothing",
			paths: nil,
			want:  nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := manifest.Load(tt.paths...)
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(t, s); !slices.Equal(got, tt.want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestLoadTypes(t *testing.T) {
	s, err := manifest.Load("testdata/multi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Namespaces) != 1 || len(s.Pods) != 1 || len(s.Services) != 1 || len(s.NetworkPolicies) != 1 || len(s.Others) != 2 {
		t.Fatalf("unexpected grouping: %v", describe(t, s))
	}
	// The default namespace is written into the object, not only reported.
	if got := s.Pods[0].Namespace; got != "default" {
		t.Errorf("pod namespace = %q, want default", got)
	}
	if got := s.Pods[0].Kind; got != "Pod" {
		t.Errorf("typed objects keep TypeMeta; Kind = %q", got)
	}
	cm, ok := s.Others[0].Obj.(*unstructured.Unstructured)
	if !ok {
		t.Fatalf("Others hold unstructured objects, got %T", s.Others[0].Obj)
	}
	if cm.GetNamespace() != "default" || cm.Object["data"].(map[string]any)["level"] != "debug" {
		t.Errorf("ConfigMap not kept as written: %v", cm.Object)
	}
	src, ok := s.SourceOf(s.NetworkPolicies[0])
	if !ok || src != (manifest.Source{File: "testdata/multi.yaml", Doc: 5}) {
		t.Errorf("SourceOf(policy) = %v, %v", src, ok)
	}
	if _, ok := s.SourceOf(&corev1.Pod{}); ok {
		t.Error("SourceOf found an object that was never loaded")
	}
}

func TestRead(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []string
	}{
		{
			name:  "single document without markers",
			input: "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n",
			want:  []string{"Namespace a @ <stdin>#1"},
		},
		{
			name:  "empty input",
			input: "",
			want:  nil,
		},
		{
			name:  "only comments and markers",
			input: "# nothing here\n---\n---\n# still nothing\n...\n",
			want:  nil,
		},
		{
			name:  "empty documents still count",
			input: "---\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
			want:  []string{"Namespace a @ <stdin>#2"},
		},
		{
			name:  "content on the marker line",
			input: "--- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n--- # comment\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n",
			want:  []string{"Namespace a @ <stdin>#1", "Namespace b @ <stdin>#2"},
		},
		{
			name:  "document end marker and CRLF",
			input: "apiVersion: v1\r\nkind: Namespace\r\nmetadata: {name: a}\r\n...\r\n---\r\napiVersion: v1\r\nkind: Namespace\r\nmetadata: {name: b}\r\n",
			want:  []string{"Namespace a @ <stdin>#1", "Namespace b @ <stdin>#2"},
		},
		{
			name:  "byte order mark before JSON",
			input: "\xef\xbb\xbf{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"a\"}}",
			want:  []string{"Namespace a @ <stdin>#1"},
		},
		{
			name:  "JSON in a YAML stream",
			input: "# comment first, so this is YAML\n{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"a\"}}\n",
			want:  []string{"Namespace a @ <stdin>#1"},
		},
		{
			name:  "typed List without items",
			input: "apiVersion: v1\nkind: PodList\nmetadata: {}\n",
			want:  nil,
		},
		{
			name:  "empty List",
			input: "apiVersion: v1\nkind: List\nitems: []\n",
			want:  nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := manifest.Read(strings.NewReader(tt.input), "<stdin>")
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(t, s); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLoadStdin(t *testing.T) {
	f, err := os.Open("testdata/objects.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	saved := os.Stdin
	os.Stdin = f
	defer func() { os.Stdin = saved }()

	s, err := manifest.Load(manifest.Stdin, "testdata/dir/a.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"Node node-a @ <stdin>#2",
		"Pod shop/client @ <stdin>#1",
		"Pod default/a @ testdata/dir/a.yaml#1",
	}
	if got := describe(t, s); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// A mounted ConfigMap is a directory of symlinks into a hidden, versioned
// directory; a node agent watching one must see each file exactly once.
func TestLoadSymlinks(t *testing.T) {
	dir := t.TempDir()
	pod, err := os.ReadFile("testdata/dir/a.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "..2024_01_01", "nested"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "..2024_01_01", "pod.yaml"), pod, 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"..data":   "..2024_01_01",
		"pod.yaml": filepath.Join("..data", "pod.yaml"),
		"loop":     ".", // a directory link, not followed
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Skipf("symlinks unavailable: %v", err)
		}
	}
	s, err := manifest.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Pod default/a @ " + filepath.Join(dir, "pod.yaml") + "#1"}
	if got := describe(t, s); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}

	// A dangling link is an unreadable file, not something to skip.
	if err := os.Symlink("missing.yaml", filepath.Join(dir, "broken.yaml")); err != nil {
		t.Fatal(err)
	}
	_, err = manifest.Load(dir)
	if want := filepath.Join(dir, "broken.yaml") + ": no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		paths []string
		want  string
	}{
		{
			name:  "unknown field",
			paths: []string{"testdata/bad/strict.yaml"},
			want:  `testdata/bad/strict.yaml#2 (NetworkPolicy default/x): strict decoding error: unknown field "spec.podSelecter"`,
		},
		{
			name:  "unknown field in a List item",
			paths: []string{"testdata/bad/list-item.yaml"},
			want:  `testdata/bad/list-item.yaml#1 items[1] (Pod default/typo): strict decoding error: unknown field "spec.nodeNmae"`,
		},
		{
			name:  "malformed YAML reports the file line",
			paths: []string{"testdata/bad/malformed.yaml"},
			want:  `testdata/bad/malformed.yaml#2: invalid YAML: line 10: mapping values are not allowed in this context`,
		},
		{
			name:  "duplicate key",
			paths: []string{"testdata/bad/duplicate-key.yaml"},
			want:  `testdata/bad/duplicate-key.yaml#1: invalid YAML: line 8: key "ports" already set in map`,
		},
		{
			name:  "missing apiVersion",
			paths: []string{"testdata/bad/no-apiversion.yaml"},
			want:  `testdata/bad/no-apiversion.yaml#1 (Pod lost): missing apiVersion`,
		},
		{
			name:  "missing kind",
			paths: []string{"testdata/bad/no-kind.yaml"},
			want:  `testdata/bad/no-kind.yaml#1 (lost): missing kind`,
		},
		{
			name:  "missing name",
			paths: []string{"testdata/bad/no-name.yaml"},
			want:  `testdata/bad/no-name.yaml#1 (Pod): missing metadata.name (generateName is not enough: offline objects need a fixed name)`,
		},
		{
			name:  "JSON type error",
			paths: []string{"testdata/bad/type-error.json"},
			want:  `testdata/bad/type-error.json#1 (Service default/svc): json: cannot unmarshal object into Go struct field ServiceSpec.spec.ports of type []v1.ServicePort`,
		},
		{
			name:  "JSON syntax error",
			paths: []string{"testdata/bad/json-syntax.json"},
			want:  `testdata/bad/json-syntax.json#1: invalid JSON: line 5: invalid character '}' looking for beginning of object key string`,
		},
		{
			name:  "document that is not an object",
			paths: []string{"testdata/bad/not-object.yaml"},
			want:  `testdata/bad/not-object.yaml#1: document is not an object but an array`,
		},
		{
			name:  "outdated apiVersion of a typed kind",
			paths: []string{"testdata/bad/old-version.yaml"},
			want:  `testdata/bad/old-version.yaml#1 (NetworkPolicy legacy): apiVersion "extensions/v1beta1" is not supported for NetworkPolicy; use "networking.k8s.io/v1"`,
		},
		{
			name:  "duplicate object in one file, namespace defaulted in one",
			paths: []string{"testdata/bad/duplicate.yaml"},
			want:  `testdata/bad/duplicate.yaml#2 (Pod default/same): duplicate object: already defined in testdata/bad/duplicate.yaml#1`,
		},
		{
			name:  "duplicate object across files",
			paths: []string{"testdata/dir", "testdata/bad/same-as-dir-a.yaml"},
			want:  `testdata/bad/same-as-dir-a.yaml#1 (Pod default/a): duplicate object: already defined in testdata/dir/a.yaml#1`,
		},
		{
			name:  "missing file",
			paths: []string{"testdata/multi.yaml", "testdata/nope.yaml"},
			want:  `testdata/nope.yaml: no such file or directory`,
		},
		{
			name:  "an error after good files still fails the load",
			paths: []string{"testdata/multi.yaml", "testdata/bad/strict.yaml"},
			want:  `testdata/bad/strict.yaml#2 (NetworkPolicy default/x): strict decoding error: unknown field "spec.podSelecter"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := manifest.Load(tt.paths...)
			if err == nil {
				t.Fatalf("no error; loaded %v", describe(t, s))
			}
			if s != nil {
				t.Error("a failed load returned a Set")
			}
			if err.Error() != tt.want {
				t.Errorf("error\n  %s\nwant\n  %s", err, tt.want)
			}
			var e *manifest.Error
			if !errors.As(err, &e) {
				t.Errorf("error is %T, want *manifest.Error", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Error("error spans lines")
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct {
		name, input, want string
	}{
		{"scalar document", "hello\n", `in.yaml#1: document is not an object but a string`},
		{"kind not a string", "apiVersion: v1\nkind: [Pod]\n", `in.yaml#1: kind must be a string, not an array`},
		{"metadata not an object", "apiVersion: v1\nkind: Pod\nmetadata: x\n", `in.yaml#1 (Pod): metadata must be an object, not a string`},
		{"items not an array", "apiVersion: v1\nkind: List\nitems: {}\n", `in.yaml#1 (List): items must be an array, not an object`},
		{"plain List items need a kind", "apiVersion: v1\nkind: List\nitems:\n- metadata: {name: x}\n", `in.yaml#1 items[0] (x): missing apiVersion and kind`},
		{"missing kind", "apiVersion: v1\nmetadata: {name: x}\n", `in.yaml#1 (x): missing kind`},
		{"bad apiVersion", "apiVersion: a/b/c\nkind: Pod\nmetadata: {name: x}\n", `in.yaml#1 (Pod x): invalid apiVersion "a/b/c"`},
		{"core group Deployment", "apiVersion: v1\nkind: Deployment\nmetadata: {name: x}\n", `in.yaml#1 (Deployment x): apiVersion "v1" is not supported for Deployment; use "apps/v1"`},
		{"misspelt kind in a built-in group", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolcy\nmetadata: {name: x, namespace: a}\n", `in.yaml#1 (NetworkPolcy a/x): kind "NetworkPolcy" is not a kind of networking.k8s.io/v1 (misspelt?)`},
		{"kind in the wrong case", "apiVersion: v1\nkind: pod\nmetadata: {name: x}\n", `in.yaml#1 (pod x): kind "pod" is not a kind of v1 (misspelt?)`},
		{"tab indentation", "apiVersion: v1\nkind: Pod\nmetadata:\n\tname: x\n", `in.yaml#1: invalid YAML: line 4: found character that cannot start any token`},
		{"invalid name", "apiVersion: v1\nkind: Pod\nmetadata: {name: Web}\n", `in.yaml#1 (Pod default/Web): invalid metadata.name "Web": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
		{"invalid namespace", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: a_b}\n", `in.yaml#1 (Widget a_b/w): invalid metadata.namespace "a_b": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`},
		{"name with a newline", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: \"a\\nb\", namespace: \"x y\"}\n", `in.yaml#1 (Widget "x y"/"a\nb"): invalid metadata.namespace "x y": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`},
		{"Lists nested too deep", strings.Repeat(`{"apiVersion":"v1","kind":"List","items":[`, 10) + strings.Repeat("]}", 10), `in.yaml#1 items[0].items[0].items[0].items[0].items[0].items[0].items[0].items[0] (List): Lists nested more than 8 deep`},
		{"JSON stream with a non-object", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}} 5`, `in.yaml#2: document is not an object but a number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := manifest.Read(strings.NewReader(tt.input), "in.yaml")
			if err == nil || s != nil {
				t.Fatalf("got set %v, error %v; want error", s, err)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n  %s\nwant\n  %s", err, tt.want)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	a, err := manifest.Load("testdata/dir")
	if err != nil {
		t.Fatal(err)
	}
	b, err := manifest.Load("testdata/objects.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	if a.Len() != 5 {
		t.Errorf("merged set has %d objects, want 5", a.Len())
	}
	if src, ok := a.SourceOf(b.Nodes[0]); !ok || src.String() != "testdata/objects.json#2" {
		t.Errorf("SourceOf after merge = %v, %v", src, ok)
	}

	dup, err := manifest.Load("testdata/bad/same-as-dir-a.yaml")
	if err != nil {
		t.Fatal(err)
	}
	before := describe(t, a)
	err = a.Merge(dup)
	want := `testdata/bad/same-as-dir-a.yaml#1 (Pod default/a): duplicate object: already defined in testdata/dir/a.yaml#1`
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %s", err, want)
	}
	if after := describe(t, a); !slices.Equal(before, after) {
		t.Error("a failed Merge changed the set")
	}

	// Sets built by hand are checked too.
	hand := &manifest.Set{Pods: []*corev1.Pod{{}}}
	hand.Pods[0].Name, hand.Pods[0].Namespace = "client", "shop"
	if err := hand.Merge(b); err == nil {
		t.Error("duplicate with a hand-built set not detected")
	}
}

func TestSourceString(t *testing.T) {
	for _, tt := range []struct {
		src  manifest.Source
		want string
	}{
		{manifest.Source{File: "a/b.yaml", Doc: 2}, "a/b.yaml#2"},
		{manifest.Source{File: "a/b.yaml", Doc: 1}, "a/b.yaml#1"},
		{manifest.Source{File: "a/b.yaml"}, "a/b.yaml"},
	} {
		if got := tt.src.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.src, got, tt.want)
		}
	}
}

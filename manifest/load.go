package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/validate/content"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// Stdin is the path that Load reads from standard input, and the file name
// its objects are reported under.
const Stdin = "-"

// strictDecoder keeps TypeMeta on decoded objects (unlike UniversalDecoder,
// which converts to internal versions) and rejects unknown and duplicate
// fields: a typo such as "podSelecter" would otherwise silently widen a policy.
var strictDecoder = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// Load reads every path: a file (whatever its extension), a directory
// (recursively, *.yaml, *.yml and *.json in lexical order, skipping names
// starting with "."), or Stdin. Any error aborts the load and returns a nil Set.
func Load(paths ...string) (*Set, error) {
	set := &Set{}
	loaded := map[string]bool{}
	for _, p := range paths {
		files, err := expand(p)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			// The same file reached twice (a directory and a file in it) is
			// the same definition, not a conflict.
			if loaded[f] {
				continue
			}
			loaded[f] = true
			part, err := readPath(f)
			if err != nil {
				return nil, err
			}
			if err := set.Merge(part); err != nil {
				return nil, err
			}
		}
	}
	return set, nil
}

func readPath(p string) (*Set, error) {
	if p == Stdin {
		return Read(os.Stdin, "<stdin>")
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, &Error{Source: Source{File: p}, Err: pathErr(err)}
	}
	defer f.Close()
	return Read(f, p)
}

// pathErr drops the operation and path that *fs.PathError repeats, since
// the Error around it already names the file.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

var manifestExt = map[string]bool{".yaml": true, ".yml": true, ".json": true}

func expand(p string) ([]string, error) {
	if p == Stdin {
		return []string{Stdin}, nil
	}
	p = filepath.Clean(p)
	info, err := os.Stat(p)
	if err != nil {
		return nil, &Error{Source: Source{File: p}, Err: pathErr(err)}
	}
	if !info.IsDir() {
		return []string{p}, nil
	}
	// WalkDir does not follow a symlinked root; a trailing separator makes
	// the link resolve, and the paths it yields are still under p.
	root := p
	if li, err := os.Lstat(p); err == nil && li.Mode()&fs.ModeSymlink != 0 {
		root = p + string(filepath.Separator)
	}
	var files []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return &Error{Source: Source{File: path}, Err: pathErr(err)}
		}
		if path != root && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !manifestExt[strings.ToLower(filepath.Ext(path))] {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			// Files in a mounted ConfigMap are symlinks into a hidden
			// directory, so they must count; links to directories are not
			// followed, which also rules out cycles.
			target, err := os.Stat(path)
			if err != nil {
				return &Error{Source: Source{File: path}, Err: pathErr(err)}
			}
			if target.IsDir() {
				return nil
			}
		}
		files = append(files, path)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return files, nil
}

// Read decodes every document of one stream, reporting it as name. Any
// error aborts and returns a nil Set.
func Read(r io.Reader, name string) (*Set, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, &Error{Source: Source{File: name}, Err: err}
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var docs []document
	if isJSON(data) {
		docs, err = splitJSON(data, name)
	} else {
		docs, err = splitYAML(data, name)
	}
	if err != nil {
		return nil, err
	}
	set := &Set{}
	for _, d := range docs {
		if err := decode(set, located{src: Source{File: name, Doc: d.index}}, d.json); err != nil {
			return nil, err
		}
	}
	return set, nil
}

// document is one non-empty document converted to JSON.
type document struct {
	index int
	json  []byte
}

// isJSON decides by the first significant byte, as kubectl does. A YAML flow
// mapping at the top of a file is therefore read as JSON; that is rare enough
// to be worth the exact JSON error positions everyone else gets.
func isJSON(data []byte) bool {
	t := bytes.TrimLeft(data, " \t\r\n")
	return len(t) > 0 && t[0] == '{'
}

// splitJSON reads a stream of concatenated JSON values, each one document.
func splitJSON(data []byte, name string) ([]document, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var docs []document
	for i := 1; ; i++ {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err == io.EOF {
			return docs, nil
		}
		if err != nil {
			off := int64(len(data))
			var se *json.SyntaxError
			if errors.As(err, &se) {
				off = se.Offset
			}
			line := 1 + bytes.Count(data[:min(max(off-1, 0), int64(len(data)))], []byte("\n"))
			return nil, &Error{Source: Source{File: name, Doc: i}, Err: fmt.Errorf("invalid JSON: line %d: %v", line, err)}
		}
		if bytes.Equal(raw, []byte("null")) {
			continue
		}
		docs = append(docs, document{index: i, json: raw})
	}
}

// splitYAML splits on "---" (and "...") lines itself rather than using a
// library reader so that it knows where each document starts and can report
// file line numbers instead of document-relative ones.
func splitYAML(data []byte, name string) ([]document, error) {
	type section struct {
		text      []byte
		firstLine int
		explicit  bool // opened by "---"
	}
	var sections []section
	cur := section{firstLine: 1}
	lines := bytes.SplitAfter(data, []byte("\n"))
	for n, line := range lines {
		if isSeparator(line) {
			sections = append(sections, cur)
			// The marker is blanked rather than dropped: "--- {a: 1}" keeps
			// its content and columns, and line numbers stay aligned.
			blank := append(bytes.Repeat([]byte(" "), 3), line[3:]...)
			cur = section{text: blank, firstLine: n + 1, explicit: line[0] == '-'}
			continue
		}
		cur.text = append(cur.text, line...)
	}
	sections = append(sections, cur)

	var docs []document
	index := 0
	for _, sec := range sections {
		// As in YAML, only "---" opens a document that may be empty; the
		// text before the first marker or after "..." is one only if it has
		// content. So "---" at the top of a file or "...\n---" do not shift
		// the numbering.
		blank := isBlank(sec.text)
		if !sec.explicit && blank {
			continue
		}
		index++
		if blank {
			continue
		}
		j, err := yaml.YAMLToJSONStrict(sec.text)
		if err != nil {
			return nil, &Error{
				Source: Source{File: name, Doc: index},
				Err:    fmt.Errorf("invalid YAML: %s", shiftLines(fixDuplicateKeyLine(oneLine(err.Error()), sec.text), sec.firstLine)),
			}
		}
		if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
			continue
		}
		docs = append(docs, document{index: index, json: j})
	}
	return docs, nil
}

var duplicateKey = regexp.MustCompile(`line (\d+): key "((?:[^"\\]|\\.)*)" already set in map`)

// fixDuplicateKeyLine moves a duplicate-key report from the line of the
// value, where the YAML parser puts it (the line after the key for a block
// value), to the line of the key itself.
func fixDuplicateKeyLine(msg string, text []byte) string {
	lines := strings.Split(string(text), "\n")
	return duplicateKey.ReplaceAllStringFunc(msg, func(m string) string {
		sub := duplicateKey.FindStringSubmatch(m)
		n, err := strconv.Atoi(sub[1])
		if err != nil || n > len(lines) {
			return m
		}
		key, err := strconv.Unquote(`"` + sub[2] + `"`)
		if err != nil {
			return m
		}
		keyLine := regexp.MustCompile(`^[\s-]*(` + regexp.QuoteMeta(key) + `|"` + regexp.QuoteMeta(key) + `"|'` + regexp.QuoteMeta(key) + `')\s*:`)
		for i := n; i >= 1 && i >= n-1; i-- {
			if keyLine.MatchString(lines[i-1]) {
				return strings.Replace(m, "line "+sub[1], "line "+strconv.Itoa(i), 1)
			}
		}
		return m
	})
}

func isSeparator(line []byte) bool {
	if !bytes.HasPrefix(line, []byte("---")) && !bytes.HasPrefix(line, []byte("...")) {
		return false
	}
	rest := line[3:]
	return len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\r' || rest[0] == '\n'
}

func isBlank(text []byte) bool {
	for _, l := range bytes.Split(text, []byte("\n")) {
		l = bytes.TrimSpace(l)
		if len(l) > 0 && l[0] != '#' {
			return false
		}
	}
	return true
}

// decode turns one JSON object (a document or a List item) into objects in set.
func decode(set *Set, loc located, data []byte) error {
	fail := func(kind, ns, name string, err error) error {
		return &Error{Source: loc.src, Item: loc.item, Kind: kind, Namespace: ns, Name: name, Err: err}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil || top == nil {
		return fail("", "", "", fmt.Errorf("document is not an object but %s", jsonType(data)))
	}
	apiVersion, err := stringField(top, "apiVersion", "apiVersion")
	if err != nil {
		return fail("", "", "", err)
	}
	kind, err := stringField(top, "kind", "kind")
	if err != nil {
		return fail("", "", "", err)
	}
	var name, ns, generateName string
	if raw, ok := top["metadata"]; ok && !isNull(raw) {
		var md map[string]json.RawMessage
		if err := json.Unmarshal(raw, &md); err != nil {
			return fail(kind, "", "", fmt.Errorf("metadata must be an object, not %s", jsonType(raw)))
		}
		if name, err = stringField(md, "name", "metadata.name"); err != nil {
			return fail(kind, "", "", err)
		}
		if ns, err = stringField(md, "namespace", "metadata.namespace"); err != nil {
			return fail(kind, "", name, err)
		}
		generateName, _ = stringField(md, "generateName", "")
	}
	switch {
	case apiVersion == "" && kind == "":
		return fail("", ns, name, errors.New("missing apiVersion and kind"))
	case apiVersion == "":
		return fail(kind, ns, name, errors.New("missing apiVersion"))
	case kind == "":
		return fail("", ns, name, errors.New("missing kind"))
	}
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return fail(kind, ns, name, fmt.Errorf("invalid apiVersion %q", apiVersion))
	}
	gvk := gv.WithKind(kind)

	if isList(gvk, top) {
		if strings.Count(loc.item, "items[") >= maxListDepth {
			return fail(kind, ns, name, fmt.Errorf("Lists nested more than %d deep", maxListDepth))
		}
		return decodeList(set, loc, gvk, top["items"])
	}

	if name == "" {
		if generateName != "" {
			return fail(kind, ns, name, errors.New("missing metadata.name (generateName is not enough: offline objects need a fixed name)"))
		}
		return fail(kind, ns, name, errors.New("missing metadata.name"))
	}
	if want, ok := unsupportedVersion(gvk); ok {
		return fail(kind, ns, name, fmt.Errorf("apiVersion %q is not supported for %s; use %q", apiVersion, kind, want.GroupVersion().String()))
	}
	if unknownBuiltinKind(gvk) {
		return fail(kind, ns, name, fmt.Errorf("kind %q is not a kind of %s (misspelt?)", kind, apiVersion))
	}
	defaulted := ns == "" && isNamespaced(gvk)
	if defaulted {
		ns = metav1NamespaceDefault
	}
	if err := validateNames(gvk, ns, name); err != nil {
		return fail(kind, ns, name, err)
	}

	var obj runtime.Object
	if scheme.Scheme.Recognizes(gvk) {
		typed, _, err := strictDecoder.Decode(data, nil, nil)
		if err != nil {
			return fail(kind, ns, name, err)
		}
		if _, ok := typedKinds[kind]; ok {
			obj = typed
		}
	}
	if obj == nil {
		// Others keep exactly what was written; the number-aware decoder
		// gives int64 where unstructured helpers expect it.
		u := &unstructured.Unstructured{}
		if err := utiljson.Unmarshal(data, &u.Object); err != nil {
			return fail(kind, ns, name, err)
		}
		obj = u
	}
	if defaulted {
		acc, err := meta.Accessor(obj)
		if err != nil {
			return fail(kind, ns, name, err)
		}
		acc.SetNamespace(ns)
	}
	if err := set.add(obj, loc); err != nil {
		var e *Error
		if errors.As(err, &e) {
			return e
		}
		return fail(kind, ns, name, err)
	}
	return nil
}

// validateNames rejects names the API server would, because an impossible
// object must not take part in matching, and names end up in keys and
// messages that assume them well-formed.
func validateNames(gvk schema.GroupVersionKind, ns, name string) error {
	if ns != "" {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			return fmt.Errorf("invalid metadata.namespace %q: %s", ns, strings.Join(msgs, "; "))
		}
	}
	var msgs []string
	switch want, typed := typedKinds[gvk.Kind]; {
	case !typed || want != gvk:
		msgs = content.IsPathSegmentName(name)
	case gvk.Kind == "Namespace":
		msgs = validation.IsDNS1123Label(name)
	case gvk.Kind == "Service":
		msgs = validation.IsDNS1035Label(name)
	default:
		msgs = validation.IsDNS1123Subdomain(name)
	}
	if len(msgs) > 0 {
		return fmt.Errorf("invalid metadata.name %q: %s", name, strings.Join(msgs, "; "))
	}
	return nil
}

// maxListDepth bounds List nesting, which real manifests barely use and
// which costs a re-parse of the rest of the document per level.
const maxListDepth = 8

// isList accepts "List" and any "...List" kind with items, so that both
// `kubectl get -o yaml` output and typed lists such as PodList flatten.
func isList(gvk schema.GroupVersionKind, top map[string]json.RawMessage) bool {
	if gvk.Kind == "List" {
		return true
	}
	if !strings.HasSuffix(gvk.Kind, "List") {
		return false
	}
	if _, hasItems := top["items"]; hasItems {
		return true
	}
	obj, err := scheme.Scheme.New(gvk)
	return err == nil && meta.IsListType(obj)
}

func decodeList(set *Set, loc located, gvk schema.GroupVersionKind, rawItems json.RawMessage) error {
	if len(rawItems) == 0 || isNull(rawItems) {
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(rawItems, &items); err != nil {
		return &Error{Source: loc.src, Item: loc.item, Kind: gvk.Kind, Err: fmt.Errorf("items must be an array, not %s", jsonType(rawItems))}
	}
	// Typed lists (PodList) may omit kind and apiVersion on their items, as
	// the API server does; a plain List may not.
	elemKind := strings.TrimSuffix(gvk.Kind, "List")
	for i, item := range items {
		itemLoc := loc
		itemLoc.item = fmt.Sprintf("items[%d]", i)
		if loc.item != "" {
			itemLoc.item = loc.item + "." + itemLoc.item
		}
		if elemKind != "" {
			item = withDefaults(item, gvk.GroupVersion().String(), elemKind)
		}
		if err := decode(set, itemLoc, item); err != nil {
			return err
		}
	}
	return nil
}

// withDefaults inserts apiVersion and kind when an item lacks them. It
// edits the text rather than re-encoding a map so that duplicate fields in
// the item still reach the strict decoder.
func withDefaults(item json.RawMessage, apiVersion, kind string) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(item, &m) != nil || m == nil {
		return item // decode reports it
	}
	var fields []string
	if _, ok := m["apiVersion"]; !ok {
		v, _ := json.Marshal(apiVersion)
		fields = append(fields, `"apiVersion":`+string(v))
	}
	if _, ok := m["kind"]; !ok {
		v, _ := json.Marshal(kind)
		fields = append(fields, `"kind":`+string(v))
	}
	if len(fields) == 0 {
		return item
	}
	body := bytes.TrimSpace(item)[1:] // after '{'
	ins := strings.Join(fields, ",")
	if len(m) > 0 {
		ins += ","
	}
	return append([]byte("{"+ins), body...)
}

// stringField reads an optional string; null counts as absent.
func stringField(m map[string]json.RawMessage, key, path string) (string, error) {
	raw, ok := m[key]
	if !ok || isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%s must be a string, not %s", path, jsonType(raw))
	}
	return s, nil
}

func isNull(raw []byte) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

func jsonType(raw []byte) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return "empty"
	}
	switch t[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

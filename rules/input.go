package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// The rules' input is the AdmissionReview as JSON. Encoding the review with
// encoding/json and decoding it again into an ast value (the obvious way)
// costs more than evaluating the requiredLabels rules, so the input is
// built here directly: the request's fixed fields from the Go struct, and
// the objects (already JSON in the request) parsed straight into ast
// values. The result is the value json.Marshal then ast.ValueFromReader
// would give (TestReviewValueMatchesJSON holds them to it).

// reviewValue is review as the rules see it.
func reviewValue(review *admissionv1.AdmissionReview) (ast.Value, error) {
	kvs := make([][2]*ast.Term, 0, 4)
	if review.APIVersion != "" {
		kvs = append(kvs, ast.Item(keyTerm("apiVersion"), stringTerm(review.APIVersion)))
	}
	if review.Kind != "" {
		kvs = append(kvs, ast.Item(keyTerm("kind"), stringTerm(review.Kind)))
	}
	if review.Request != nil {
		req, err := requestValue(review.Request)
		if err != nil {
			return nil, err
		}
		kvs = append(kvs, ast.Item(keyTerm("request"), ast.NewTerm(req)))
	}
	if review.Response != nil {
		// Never on the hot path: an input carrying a response is unusual.
		v, err := marshalledValue(review.Response)
		if err != nil {
			return nil, err
		}
		kvs = append(kvs, ast.Item(keyTerm("response"), ast.NewTerm(v)))
	}
	return ast.NewObject(kvs...), nil
}

// requestValue follows AdmissionRequest's JSON tags: omitempty strings and
// pointers are left out when empty, every other field is always there (an
// object without a body is null).
func requestValue(r *admissionv1.AdmissionRequest) (ast.Value, error) {
	var buf [15][2]*ast.Term
	kvs := buf[:0]
	put := func(k string, v *ast.Term) { kvs = append(kvs, ast.Item(keyTerm(k), v)) }
	putString := func(k, v string) {
		if v != "" {
			put(k, stringTerm(v))
		}
	}
	put("uid", stringTerm(string(r.UID)))
	put("kind", gvkTerm(r.Kind))
	put("resource", gvrTerm(r.Resource))
	putString("subResource", r.SubResource)
	if r.RequestKind != nil {
		put("requestKind", gvkTerm(*r.RequestKind))
	}
	if r.RequestResource != nil {
		put("requestResource", gvrTerm(*r.RequestResource))
	}
	putString("requestSubResource", r.RequestSubResource)
	putString("name", r.Name)
	putString("namespace", r.Namespace)
	put("operation", stringTerm(string(r.Operation)))
	put("userInfo", userInfoTerm(&r.UserInfo))
	for _, x := range []struct {
		key string
		raw *runtime.RawExtension
	}{{"object", &r.Object}, {"oldObject", &r.OldObject}, {"options", &r.Options}} {
		v, err := rawValue(x.raw)
		if err != nil {
			return nil, fmt.Errorf("request.%s: %w", x.key, err)
		}
		put(x.key, ast.NewTerm(v))
	}
	if r.DryRun != nil {
		put("dryRun", ast.InternedTerm(*r.DryRun))
	}
	return ast.NewObject(kvs...), nil
}

func gvkTerm(k metav1.GroupVersionKind) *ast.Term {
	return ast.ObjectTerm(
		ast.Item(keyTerm("group"), stringTerm(k.Group)),
		ast.Item(keyTerm("version"), stringTerm(k.Version)),
		ast.Item(keyTerm("kind"), stringTerm(k.Kind)),
	)
}

func gvrTerm(r metav1.GroupVersionResource) *ast.Term {
	return ast.ObjectTerm(
		ast.Item(keyTerm("group"), stringTerm(r.Group)),
		ast.Item(keyTerm("version"), stringTerm(r.Version)),
		ast.Item(keyTerm("resource"), stringTerm(r.Resource)),
	)
}

func userInfoTerm(u *authenticationv1.UserInfo) *ast.Term {
	kvs := make([][2]*ast.Term, 0, 4)
	if u.Username != "" {
		kvs = append(kvs, ast.Item(keyTerm("username"), stringTerm(u.Username)))
	}
	if u.UID != "" {
		kvs = append(kvs, ast.Item(keyTerm("uid"), stringTerm(u.UID)))
	}
	if len(u.Groups) > 0 {
		kvs = append(kvs, ast.Item(keyTerm("groups"), stringsTerm(u.Groups)))
	}
	if len(u.Extra) > 0 {
		extra := ast.NewObjectWithCapacity(len(u.Extra))
		for k, v := range u.Extra {
			t := ast.InternedNullTerm
			if v != nil {
				t = stringsTerm(v)
			}
			extra.Insert(stringTerm(k), t)
		}
		kvs = append(kvs, ast.Item(keyTerm("extra"), ast.NewTerm(extra)))
	}
	return ast.ObjectTerm(kvs...)
}

func stringsTerm(ss []string) *ast.Term {
	ts := make([]*ast.Term, len(ss))
	for i, s := range ss {
		ts[i] = stringTerm(s)
	}
	return ast.ArrayTerm(ts...)
}

// stringTerm is s as encoding/json writes it: every byte that is not
// valid UTF-8 becomes U+FFFD.
func stringTerm(s string) *ast.Term {
	if !utf8.ValidString(s) {
		b := make([]byte, 0, len(s)+8)
		for i := 0; i < len(s); {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				b = utf8.AppendRune(b, utf8.RuneError)
			} else {
				b = append(b, s[i:i+n]...)
			}
			i += n
		}
		s = string(b)
	}
	return ast.InternedTerm(s)
}

// rawValue is what json.Marshal writes for a RawExtension, as a value: the
// raw JSON as it is, null when there is none, and anything else (CBOR, or
// a Go object without raw bytes) through RawExtension's own marshalling.
func rawValue(re *runtime.RawExtension) (ast.Value, error) {
	if re.Raw == nil && re.Object == nil {
		return ast.NullValue, nil
	}
	if re.Raw != nil {
		if v, err := parseJSON(re.Raw); err == nil {
			return v, nil
		}
	}
	return marshalledValue(re)
}

func marshalledValue(x any) (ast.Value, error) {
	b, err := json.Marshal(x)
	if err != nil {
		return nil, err
	}
	return parseJSON(b)
}

// ---- JSON to ast ----

// parseJSON parses one JSON document (surrounding whitespace allowed)
// into an ast value, as ast.ValueFromReader does but without the generic
// Go values in between: numbers keep their text, duplicate keys keep the
// last value, strings decode as encoding/json decodes them.
//
// Allocation is what parsing costs, so the document is copied into one
// string that plain strings and numbers are sliced from, terms come from
// slabs, and the keys Kubernetes objects use come from a table.
func parseJSON(data []byte) (ast.Value, error) {
	p := jsonParser{data: data, src: string(data)}
	p.space()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.data) {
		return nil, p.errorf("unexpected %q after the value", p.data[p.i])
	}
	return v, nil
}

// maxJSONDepth is encoding/json's nesting limit: deeper input is refused
// rather than recursed into.
const maxJSONDepth = 10000

type jsonParser struct {
	data []byte
	src  string // data, once, as a string
	i    int
	slab []ast.Term
	kvs  [][2]*ast.Term // the pairs of the objects being parsed, a stack
}

// term returns v in a term from the current slab.
func (p *jsonParser) term(v ast.Value) *ast.Term {
	if len(p.slab) == 0 {
		p.slab = make([]ast.Term, 32)
	}
	t := &p.slab[0]
	p.slab = p.slab[1:]
	t.Value = v
	return t
}

// key returns the term of an object key: a shared one for the keys
// Kubernetes objects use, else a new one.
func (p *jsonParser) key(s string) *ast.Term {
	if t, ok := commonKeys[s]; ok {
		return t
	}
	return p.term(ast.String(s))
}

func (p *jsonParser) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *jsonParser) space() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) literal(word string, v ast.Value) (ast.Value, error) {
	if len(p.data)-p.i < len(word) || string(p.data[p.i:p.i+len(word)]) != word {
		return nil, p.errorf("invalid literal")
	}
	p.i += len(word)
	return v, nil
}

func (p *jsonParser) value(depth int) (ast.Value, error) {
	if p.i >= len(p.data) {
		return nil, errors.New("invalid JSON: unexpected end of input")
	}
	switch c := p.data[p.i]; {
	case c == '{':
		return p.object(depth + 1)
	case c == '[':
		return p.array(depth + 1)
	case c == '"':
		s, err := p.string()
		if err != nil {
			return nil, err
		}
		return ast.String(s), nil
	case c == 't':
		return p.literal("true", ast.Boolean(true))
	case c == 'f':
		return p.literal("false", ast.Boolean(false))
	case c == 'n':
		return p.literal("null", ast.NullValue)
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	default:
		return nil, p.errorf("unexpected %q", c)
	}
}

func (p *jsonParser) object(depth int) (ast.Value, error) {
	if depth > maxJSONDepth {
		return nil, p.errorf("exceeded max depth")
	}
	p.i++ // {
	p.space()
	if p.i < len(p.data) && p.data[p.i] == '}' {
		p.i++
		return ast.NewObject(), nil
	}
	base := len(p.kvs)
	defer func() { p.kvs = p.kvs[:base] }()
	for {
		p.space()
		if p.i >= len(p.data) || p.data[p.i] != '"' {
			return nil, p.errorf("want an object key")
		}
		k, err := p.string()
		if err != nil {
			return nil, err
		}
		p.space()
		if p.i >= len(p.data) || p.data[p.i] != ':' {
			return nil, p.errorf("want ':' after an object key")
		}
		p.i++
		p.space()
		v, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		p.kvs = append(p.kvs, [2]*ast.Term{p.key(k), p.term(v)})
		p.space()
		if p.i >= len(p.data) {
			return nil, p.errorf("unterminated object")
		}
		if p.data[p.i] == ',' {
			p.i++
			continue
		}
		if p.data[p.i] != '}' {
			return nil, p.errorf("want ',' or '}' in an object")
		}
		p.i++
		break
	}
	kvs := p.kvs[base:]
	if !uniqueKeys(kvs) {
		obj := ast.NewObjectWithCapacity(len(kvs))
		for _, kv := range kvs {
			obj.Insert(kv[0], kv[1]) // the last one wins, as in encoding/json
		}
		return obj, nil
	}
	return ast.NewObject(kvs...), nil // copies kvs
}

// uniqueKeys reports whether no key repeats. JSON objects rarely repeat a
// key, and ast.NewObject, the fast constructor, assumes none does.
func uniqueKeys(kvs [][2]*ast.Term) bool {
	if len(kvs) > 16 {
		seen := make(map[ast.String]struct{}, len(kvs))
		for _, kv := range kvs {
			s := kv[0].Value.(ast.String)
			if _, dup := seen[s]; dup {
				return false
			}
			seen[s] = struct{}{}
		}
		return true
	}
	for i := 1; i < len(kvs); i++ {
		for j := range i {
			if kvs[i][0].Value.(ast.String) == kvs[j][0].Value.(ast.String) {
				return false
			}
		}
	}
	return true
}

func (p *jsonParser) array(depth int) (ast.Value, error) {
	if depth > maxJSONDepth {
		return nil, p.errorf("exceeded max depth")
	}
	p.i++ // [
	p.space()
	if p.i < len(p.data) && p.data[p.i] == ']' {
		p.i++
		return ast.NewArray(), nil
	}
	var ts []*ast.Term
	for {
		p.space()
		v, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		ts = append(ts, p.term(v))
		p.space()
		if p.i >= len(p.data) {
			return nil, p.errorf("unterminated array")
		}
		if p.data[p.i] == ',' {
			p.i++
			continue
		}
		if p.data[p.i] != ']' {
			return nil, p.errorf("want ',' or ']' in an array")
		}
		p.i++
		return ast.NewArray(ts...), nil
	}
}

// string reads a JSON string. Plain ones (no escape, valid UTF-8) are
// sliced out; anything else is decoded by encoding/json itself, so that
// escapes, surrogates and invalid bytes come out exactly as it has them.
func (p *jsonParser) string() (string, error) {
	start := p.i
	p.i++ // "
	plain := true
	for p.i < len(p.data) {
		c := p.data[p.i]
		switch {
		case c == '"':
			p.i++
			tok := p.data[start:p.i]
			if plain {
				return p.src[start+1 : p.i-1], nil
			}
			var s string
			if err := json.Unmarshal(tok, &s); err != nil {
				return "", fmt.Errorf("invalid JSON string at offset %d: %w", start, err)
			}
			return s, nil
		case c == '\\':
			plain = false
			p.i += 2
		case c < 0x20:
			return "", p.errorf("control character in a string")
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRune(p.data[p.i:])
			if r == utf8.RuneError && n == 1 {
				plain = false
			}
			p.i += n
		default:
			p.i++
		}
	}
	return "", p.errorf("unterminated string")
}

// number reads a JSON number, checked against JSON's grammar, as the
// ast.Number of its text.
func (p *jsonParser) number() (ast.Value, error) {
	start := p.i
	digits := func() int {
		n := 0
		for p.i < len(p.data) && p.data[p.i] >= '0' && p.data[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.data[p.i] == '-' {
		p.i++
	}
	if p.i < len(p.data) && p.data[p.i] == '0' {
		p.i++
	} else if digits() == 0 {
		return nil, p.errorf("invalid number")
	}
	if p.i < len(p.data) && p.data[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return nil, p.errorf("invalid number")
		}
	}
	if p.i < len(p.data) && (p.data[p.i] == 'e' || p.data[p.i] == 'E') {
		p.i++
		if p.i < len(p.data) && (p.data[p.i] == '+' || p.data[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return nil, p.errorf("invalid number")
		}
	}
	s := p.src[start:p.i]
	if t := ast.InternedIntNumberTermFromString(s); t != nil {
		return t.Value, nil
	}
	n, err := ast.NumberChecked(s)
	if err != nil {
		return nil, err
	}
	return n, nil
}

// commonKeys are the terms of the object keys Kubernetes objects and
// admission requests use most.
var commonKeys = func() map[string]*ast.Term {
	keys := []string{
		"apiVersion", "kind", "request", "response", "uid", "group", "version", "resource", "subResource",
		"requestKind", "requestResource", "requestSubResource", "name", "namespace", "operation", "userInfo",
		"username", "groups", "extra", "object", "oldObject", "dryRun", "options",
		"metadata", "labels", "annotations", "generateName", "resourceVersion", "generation", "creationTimestamp",
		"deletionTimestamp", "finalizers", "ownerReferences", "managedFields", "manager", "time", "fieldsType",
		"fieldsV1", "controller", "blockOwnerDeletion",
		"spec", "status", "template", "selector", "matchLabels", "matchExpressions", "key", "operator", "values",
		"replicas", "strategy", "jobTemplate", "containers", "initContainers", "image", "imagePullPolicy", "ports",
		"containerPort", "hostPort", "protocol", "port", "targetPort", "env", "value", "valueFrom", "resources",
		"limits", "requests", "cpu", "memory", "volumeMounts", "mountPath", "volumes", "command", "args",
		"nodeName", "hostNetwork", "serviceAccountName", "restartPolicy", "dnsPolicy", "schedulerName",
		"terminationGracePeriodSeconds", "securityContext", "tolerations", "effect", "affinity", "phase",
		"conditions", "type", "podIP", "podIPs", "ip", "hostIP", "qosClass", "startTime", "containerStatuses",
		"podSelector", "policyTypes", "ingress", "egress", "from", "to", "ipBlock", "cidr", "except",
		"namespaceSelector", "endPort", "clusterIP", "clusterIPs",
	}
	m := make(map[string]*ast.Term, len(keys))
	for _, k := range keys {
		m[k] = ast.StringTerm(k)
	}
	return m
}()

// keyTerm is the term of a key the request builder uses, all of which are
// in commonKeys.
func keyTerm(k string) *ast.Term {
	if t, ok := commonKeys[k]; ok {
		return t
	}
	return ast.StringTerm(k)
}

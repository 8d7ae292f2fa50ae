package policylib_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/podwall/podwall/policylib"
)

// tCheckSelector compares policylib's selector with apimachinery's on every
// label set: ParseSelector must fail exactly when the API server's
// validation does, and a valid selector must match exactly the label sets
// metav1.LabelSelectorAsSelector matches. It reports whether sel was valid.
func tCheckSelector(t testing.TB, sel *metav1.LabelSelector, sets []map[string]string) bool {
	t.Helper()
	verrs := metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, nil)
	ours, err := policylib.ParseSelector(sel)
	if (err != nil) != (len(verrs) > 0) {
		t.Fatalf("selector %s: ParseSelector error %v, validation errors %v", tSelString(sel), err, verrs)
	}
	if len(verrs) > 0 {
		return false
	}
	theirs, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %s passes validation but LabelSelectorAsSelector fails: %v", tSelString(sel), err)
	}
	if ours.Empty() != theirs.Empty() {
		t.Errorf("selector %s: Empty() %v, apimachinery %v", tSelString(sel), ours.Empty(), theirs.Empty())
	}
	for _, l := range sets {
		if got, want := ours.Matches(l), theirs.Matches(labels.Set(l)); got != want {
			t.Fatalf("selector %s (%s) on labels %v: Matches %v, apimachinery %v", tSelString(sel), ours, l, got, want)
		}
	}
	return true
}

func tSelString(sel *metav1.LabelSelector) string {
	if sel == nil {
		return "nil"
	}
	return fmt.Sprintf("{matchLabels: %v, matchExpressions: %v}", sel.MatchLabels, sel.MatchExpressions)
}

var tSelectorLabelSets = []map[string]string{
	nil,
	{},
	{"a": ""},
	{"a": "x"},
	{"a": "y"},
	{"b": "x"},
	{"a": "x", "b": "x"},
	{"a": "x", "b": "y"},
	{"a": "y", "b": "x", "c": "z"},
	{"example.com/a": "x"},
	{"a": "x", "example.com/a": "y"},
	{"A": "x"},
}

func TestSelectorTable(t *testing.T) {
	in, notIn := metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn
	exists, dne := metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist
	cases := []struct {
		name  string
		sel   *metav1.LabelSelector
		valid bool
	}{
		{"empty selector", &metav1.LabelSelector{}, true},
		{"empty maps", &metav1.LabelSelector{MatchLabels: map[string]string{}, MatchExpressions: []metav1.LabelSelectorRequirement{}}, true},
		{"matchLabels", tSel("a", "x"), true},
		{"matchLabels empty value", tSel("a", ""), true},
		{"matchLabels two keys", tSel("a", "x", "b", "x"), true},
		{"matchLabels prefixed key", tSel("example.com/a", "x"), true},
		{"matchLabels case matters", tSel("a", "X"), true},
		{"In", tSelExpr(tExpr("a", in, "x", "y")), true},
		{"In duplicate values", tSelExpr(tExpr("a", in, "x", "x")), true},
		{"In empty value", tSelExpr(tExpr("a", in, "")), true},
		{"NotIn", tSelExpr(tExpr("a", notIn, "x")), true},
		{"NotIn empty value matches missing key", tSelExpr(tExpr("a", notIn, "")), true},
		{"NotIn several", tSelExpr(tExpr("a", notIn, "y", "x")), true},
		{"Exists", tSelExpr(tExpr("a", exists)), true},
		{"DoesNotExist", tSelExpr(tExpr("a", dne)), true},
		{"Exists and DoesNotExist contradict", tSelExpr(tExpr("a", exists), tExpr("a", dne)), true},
		{"Exists and NotIn", tSelExpr(tExpr("a", exists), tExpr("a", notIn, "x")), true},
		{"two In on one key intersect", tSelExpr(tExpr("a", in, "x", "y"), tExpr("a", in, "y", "z")), true},
		{"matchLabels and matchExpressions AND", &metav1.LabelSelector{
			MatchLabels: tLabels("a", "x"), MatchExpressions: []metav1.LabelSelectorRequirement{tExpr("b", in, "y")}}, true},
		{"matchLabels contradicted by NotIn", &metav1.LabelSelector{
			MatchLabels: tLabels("a", "x"), MatchExpressions: []metav1.LabelSelectorRequirement{tExpr("a", notIn, "x")}}, true},
		{"matchLabels and DoesNotExist on another key", &metav1.LabelSelector{
			MatchLabels: tLabels("a", "x"), MatchExpressions: []metav1.LabelSelectorRequirement{tExpr("c", dne)}}, true},
		// invalid ones
		{"unknown operator", tSelExpr(tExpr("a", "Equals", "x")), false},
		{"lower-case operator", tSelExpr(tExpr("a", "in", "x")), false},
		{"In without values", tSelExpr(tExpr("a", in)), false},
		{"NotIn without values", tSelExpr(tExpr("a", notIn)), false},
		{"Exists with values", tSelExpr(tExpr("a", exists, "x")), false},
		{"DoesNotExist with values", tSelExpr(tExpr("a", dne, "")), false},
		{"empty key", tSelExpr(tExpr("", exists)), false},
		{"bad key", tSel("-a", "x"), false},
		{"bad prefix", tSel("Example.com/a", "x"), false},
		{"bad value", tSel("a", "x y"), false},
		{"bad expression value", tSelExpr(tExpr("a", in, "x", "-y")), false},
		{"long value", tSel("a", strings.Repeat("x", 64)), false},
		{"long name", tSel(strings.Repeat("a", 64), "x"), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := tCheckSelector(t, c.sel, tSelectorLabelSets); got != c.valid {
				t.Errorf("valid = %v, want %v", got, c.valid)
			}
		})
	}

	// nil is policylib's documented exception: it matches everything
	// (apimachinery's LabelSelectorAsSelector(nil) matches nothing); callers
	// that mean otherwise handle nil first.
	s, err := policylib.ParseSelector(nil)
	if err != nil || !s.Empty() || !s.Matches(nil) || !s.Matches(tLabels("a", "x")) {
		t.Errorf("ParseSelector(nil) = %v, %v; want the empty selector", s, err)
	}
	var zero policylib.Selector
	if !zero.Empty() || !zero.Matches(tLabels("a", "x")) || zero.String() != "(all)" {
		t.Errorf("zero Selector: Empty %v String %q", zero.Empty(), zero.String())
	}
}

func TestMustParseSelectorPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("MustParseSelector did not panic on an invalid selector")
		}
	}()
	policylib.MustParseSelector(tSelExpr(tExpr("a", metav1.LabelSelectorOpIn)))
}

func TestSelectorString(t *testing.T) {
	in, notIn := metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn
	for _, c := range []struct {
		sel  *metav1.LabelSelector
		want string
	}{
		{tSel(), "(all)"},
		{tSel("b", "y", "a", "x"), "a=x,b=y"},
		{tSelExpr(tExpr("tier", notIn, "db", "cache")), "tier notin (cache,db)"},
		{tSelExpr(tExpr("app", in, "web")), "app=web"},
		{tSelExpr(tExpr("app", in, "web", "api", "web")), "app in (api,web)"},
		{tSelExpr(tExpr("app", metav1.LabelSelectorOpExists), tExpr("x", metav1.LabelSelectorOpDoesNotExist)), "app,!x"},
	} {
		if got := policylib.MustParseSelector(c.sel).String(); got != c.want {
			t.Errorf("String(%s) = %q, want %q", tSelString(c.sel), got, c.want)
		}
	}
}

// tRandSelector draws a selector over small alphabets; with invalid set it
// may also use an invalid operator, key or value, or leave In's values out.
func tRandSelector(rng *rand.Rand, keys, vals []string, invalid bool) *metav1.LabelSelector {
	ops := []metav1.LabelSelectorOperator{
		metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn,
		metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist,
	}
	sel := &metav1.LabelSelector{}
	for range rng.IntN(3) {
		if sel.MatchLabels == nil {
			sel.MatchLabels = map[string]string{}
		}
		sel.MatchLabels[keys[rng.IntN(len(keys))]] = vals[rng.IntN(len(vals))]
	}
	for range rng.IntN(4) {
		r := metav1.LabelSelectorRequirement{Key: keys[rng.IntN(len(keys))], Operator: ops[rng.IntN(len(ops))]}
		if r.Operator == metav1.LabelSelectorOpIn || r.Operator == metav1.LabelSelectorOpNotIn {
			for range 1 + rng.IntN(3) {
				r.Values = append(r.Values, vals[rng.IntN(len(vals))])
			}
		}
		if invalid && rng.IntN(8) == 0 {
			switch rng.IntN(4) {
			case 0:
				r.Operator = "Bogus"
			case 1:
				r.Values = nil
			case 2:
				r.Values = append(r.Values, "x")
			case 3:
				r.Key = "bad key"
			}
		}
		sel.MatchExpressions = append(sel.MatchExpressions, r)
	}
	return sel
}

func tRandLabels(rng *rand.Rand, keys, vals []string) map[string]string {
	if rng.IntN(10) == 0 {
		return nil
	}
	l := map[string]string{}
	for _, k := range keys {
		if rng.IntN(2) == 0 {
			l[k] = vals[rng.IntN(len(vals))]
		}
	}
	return l
}

func TestSelectorRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(2024, 1))
	keys := []string{"a", "b", "c", "example.com/a"}
	vals := []string{"", "x", "y", "z"}
	valid, pairs := 0, 0
	for range 5000 {
		sel := tRandSelector(rng, keys, vals, true)
		sets := make([]map[string]string, 8)
		for i := range sets {
			sets[i] = tRandLabels(rng, keys, vals)
		}
		sets = append(sets, tSelectorLabelSets...)
		if tCheckSelector(t, sel, sets) {
			valid++
			pairs += len(sets)
		}
	}
	if valid < 3000 {
		t.Errorf("only %d valid random selectors", valid)
	}
	t.Logf("%d valid selectors, %d selector/label-set pairs agree", valid, pairs)
}

// FuzzSelector builds a selector and label sets from the fuzzer's bytes and
// two free-form strings, and checks policylib against apimachinery.
func FuzzSelector(f *testing.F) {
	f.Add([]byte{1, 0, 1, 1, 2, 1, 0, 2, 3, 4, 5, 6, 7, 8}, "app", "web")
	f.Add([]byte{0, 3, 0, 1, 1, 2, 3, 2, 1, 2, 0, 0, 255, 17, 42}, "example.com/tier", "")
	f.Add([]byte{2, 2, 4, 0, 3, 1, 0, 2, 3, 1, 1, 1, 1}, "-bad", "bad value")
	f.Add([]byte{}, "", "")
	f.Add([]byte{0, 1, 5, 0, 0, 1, 2, 9, 9, 9}, "k", strings.Repeat("v", 63))
	f.Fuzz(func(t *testing.T, data []byte, key, val string) {
		keys := []string{"a", "b", "example.com/a", key}
		vals := []string{"", "x", "y", val}
		ops := []metav1.LabelSelectorOperator{
			metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn,
			metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist,
			"Bogus",
		}
		next := func() int {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return int(b)
		}
		sel := &metav1.LabelSelector{}
		for range next() % 3 {
			if sel.MatchLabels == nil {
				sel.MatchLabels = map[string]string{}
			}
			sel.MatchLabels[keys[next()%len(keys)]] = vals[next()%len(vals)]
		}
		for range next() % 4 {
			r := metav1.LabelSelectorRequirement{Key: keys[next()%len(keys)], Operator: ops[next()%len(ops)]}
			for range next() % 4 {
				r.Values = append(r.Values, vals[next()%len(vals)])
			}
			sel.MatchExpressions = append(sel.MatchExpressions, r)
		}
		var sets []map[string]string
		for len(data) > 0 && len(sets) < 16 {
			var l map[string]string
			for range next() % 4 {
				if l == nil {
					l = map[string]string{}
				}
				l[keys[next()%len(keys)]] = vals[next()%len(vals)]
			}
			sets = append(sets, l)
		}
		sets = append(sets, tSelectorLabelSets...)
		sets = append(sets, map[string]string{key: val}, map[string]string{key: "x", "a": val})
		tCheckSelector(t, sel, sets)
	})
}

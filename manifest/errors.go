package manifest

import (
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// Error is a load or expansion failure, located as precisely as the input
// allows. Its message is always one line, because it ends up in CLI output,
// agent logs and findings where a wrapped message would be torn apart.
type Error struct {
	Source Source
	// Item is the path inside a List document, e.g. "items[2]", since all
	// items of a List share one Source.
	Item string
	// Kind, Namespace and Name describe the object when they are known.
	Kind, Namespace, Name string
	Err                   error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Source.String())
	if e.Item != "" {
		b.WriteString(" ")
		b.WriteString(e.Item)
	}
	var what []string
	if e.Kind != "" {
		what = append(what, printable(e.Kind))
	}
	if e.Name != "" {
		if e.Namespace != "" {
			what = append(what, printable(e.Namespace)+"/"+printable(e.Name))
		} else {
			what = append(what, printable(e.Name))
		}
	}
	if len(what) > 0 {
		b.WriteString(" (" + strings.Join(what, " ") + ")")
	}
	b.WriteString(": ")
	if e.Err != nil {
		b.WriteString(oneLine(e.Err.Error()))
	} else {
		b.WriteString("unknown error")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// printable quotes names that would break the one-line, space-separated
// message; they come straight from the input, and are invalid anyway.
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsGraphic(r) || unicode.IsSpace(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

var newlines = regexp.MustCompile(`:?\s*\n\s*`)

// oneLine folds the multi-line lists some decoders produce ("yaml: unmarshal
// errors:\n  line 3: ...") into "; "-separated text.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "error converting YAML to JSON: ")
	s = strings.TrimPrefix(s, "yaml: ")
	s = strings.TrimPrefix(s, "unmarshal errors:")
	s = strings.TrimSpace(s)
	return newlines.ReplaceAllString(s, "; ")
}

var yamlLine = regexp.MustCompile(`\bline (\d+)`)

// shiftLines rewrites the parser's document-relative line numbers into file
// line numbers, which is what a person opening the file needs.
func shiftLines(msg string, firstLine int) string {
	return yamlLine.ReplaceAllStringFunc(msg, func(m string) string {
		n, err := strconv.Atoi(m[len("line "):])
		if err != nil {
			return m
		}
		return "line " + strconv.Itoa(n+firstLine-1)
	})
}

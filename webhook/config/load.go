package config

import (
	"errors"
	"fmt"
	"os"
	"strings"

	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Error is a configuration that could not be used: the file it came from
// and every problem found, each naming its field. Its message is one line,
// "FILE: problem; problem", so it reads the same in CLI output and logs.
type Error struct {
	// Source names the configuration (a file path), or is empty.
	Source string
	// Errs are the problems; validation problems are *field.Error values.
	Errs []error
}

func (e *Error) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", " ")
	}
	msg := strings.Join(msgs, "; ")
	if e.Source == "" {
		return msg
	}
	return e.Source + ": " + msg
}

// Unwrap returns the individual problems.
func (e *Error) Unwrap() []error { return e.Errs }

// Load reads, defaults and validates the configuration file at path. Any
// problem is an *Error naming the file.
func Load(path string) (*AdmissionConfiguration, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, &Error{Source: path, Errs: []error{err}}
	}
	return Parse(data, path)
}

// Parse decodes a configuration from YAML or JSON strictly, applies the
// defaults and validates it. name is the file name used in errors. Any
// problem is an *Error whose Errs list every problem at once.
//
// Strict means what the API server's strict field validation means: a
// duplicated key, an unknown field (reported with its path, such as
// "rules.requiredLabels.labels[0].defualt") or a field in the wrong case is
// an error, so a typo can never silently switch a rule off.
func Parse(data []byte, name string) (*AdmissionConfiguration, error) {
	var c AdmissionConfiguration
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, &Error{Source: name, Errs: []error{fmt.Errorf("invalid YAML: %w", trimYAMLError(err))}}
	}
	strictErrs, err := sigsjson.UnmarshalStrict(js, &c)
	if err != nil {
		return nil, &Error{Source: name, Errs: []error{fmt.Errorf("invalid configuration: %w", err)}}
	}
	if len(strictErrs) > 0 {
		return nil, &Error{Source: name, Errs: strictErrs}
	}
	c.Default()
	if err := c.Validate(); err != nil {
		return nil, &Error{Source: name, Errs: unjoin(err)}
	}
	return &c, nil
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// trimYAMLError drops the conversion's prefix, which says nothing to a user.
func trimYAMLError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}

package netns

import "errors"

// TB is the part of testing.TB that New uses; *testing.T, *testing.B and
// *testing.F satisfy it. Taking this rather than testing.TB keeps the
// testing package out of programs that import netns.
type TB interface {
	Helper()
	Cleanup(func())
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}

// New builds a Lab for a test or benchmark (see Build). It skips the test
// when the machine cannot build one (ErrUnavailable), fails it when
// building fails, and removes every namespace of the Lab when the test
// ends, failed or not.
func New(t TB) *Lab {
	t.Helper()
	l, err := Build()
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			t.Skipf("%v", err)
		}
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return l
}

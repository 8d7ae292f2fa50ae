package demo

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/podwall/podwall/internal/netns"
)

// labTB lets the test harness internal/netns, which reports through a
// testing.TB, build a lab outside a test: Fatal and Skip abort the build
// with an error, Cleanup functions run on close. Only the methods the
// harness calls are implemented; the embedded nil TB makes any other call
// panic, which a change to the harness would show at once in the demo's
// test.
type labTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	errs     []error
}

// abort carries a Fatal or Skip out of netns.New as a panic.
type abort struct{ msg string }

func (t *labTB) Helper() {}

func (t *labTB) Name() string { return "podwall-demo" }

func (t *labTB) Cleanup(f func()) {
	t.mu.Lock()
	t.cleanups = append(t.cleanups, f)
	t.mu.Unlock()
}

func (t *labTB) Fatal(args ...any)                 { panic(abort{fmt.Sprint(args...)}) }
func (t *labTB) Fatalf(format string, args ...any) { panic(abort{fmt.Sprintf(format, args...)}) }
func (t *labTB) Skipf(format string, args ...any)  { panic(abort{fmt.Sprintf(format, args...)}) }

func (t *labTB) Errorf(format string, args ...any) {
	t.mu.Lock()
	t.errs = append(t.errs, fmt.Errorf(format, args...))
	t.mu.Unlock()
}

// close runs the cleanups, last registered first, and returns the errors
// they reported.
func (t *labTB) close() error {
	t.mu.Lock()
	cs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	err := errors.Join(t.errs...)
	t.errs = nil
	return err
}

// newLab builds a netns lab; close removes every namespace it made.
func newLab() (lab *netns.Lab, close func() error, err error) {
	if err := netns.Available(); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	tb := &labTB{}
	defer func() {
		if r := recover(); r != nil {
			a, ok := r.(abort)
			if !ok {
				_ = tb.close()
				panic(r)
			}
			err = errors.Join(fmt.Errorf("%w: %s", ErrUnavailable, a.msg), tb.close())
			lab, close = nil, nil
		}
	}()
	return netns.New(tb), tb.close, nil
}

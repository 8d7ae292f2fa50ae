package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podwall/podwall/internal/netns"
)

// TestDemo runs `podwall demo` for real: network namespaces, the agent,
// HTTP and ICMP probes. Root only.
func TestDemo(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("podwall demo needs network namespaces: %v", err)
	}
	var out, errOut bytes.Buffer
	code := runCLI(context.Background(), []string{"demo", "--seed", seed}, strings.NewReader(""), &out, &errOut)
	if code != exitOK || errOut.Len() != 0 {
		t.Fatalf("exit %d, stderr %q\n%s", code, errOut.String(), out.String())
	}
	t.Log("\n" + out.String())
	for _, want := range []string{
		"== stage0", "== stage1", "== stage2", "all 108 probes agree with policylib",
		"default/busybox-access  default/httpd-1  allowed / allowed            denied / denied",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in the output", want)
		}
	}
	if strings.Contains(out.String(), "DISAGREE") {
		t.Error("a probe disagrees")
	}
}

// An interrupted demo stops and removes what it made.
func TestDemoInterrupted(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("podwall demo needs network namespaces: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out lockedBuffer
	var errOut bytes.Buffer
	done := make(chan int)
	go func() { done <- runCLI(ctx, []string{"demo", "--seed", seed}, strings.NewReader(""), &out, &errOut) }()
	for !strings.Contains(out.String(), "each flow") {
		select {
		case code := <-done:
			t.Fatalf("the demo ended before the interrupt: exit %d, %s", code, errOut.String())
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	if code := <-done; code != exitInterrupted {
		t.Errorf("exit %d, want %d (stderr %q)", code, exitInterrupted, errOut.String())
	}
	// Only this demo's namespaces count: other packages' tests make their
	// own at the same time. They share the prefix of its node namespace.
	m := regexp.MustCompile(`node namespace (\S+)node:`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no node namespace in the output:\n%s", out.String())
	}
	if left := netnsWithPrefix(t, m[1]); len(left) > 0 {
		t.Errorf("network namespaces left behind: %v", left)
	}
}

func TestDemoNoSeed(t *testing.T) {
	code, _, errOut := podwall(t, "", "demo", "--seed", "testdata/no-such-seed")
	if code != exitBadInput || !strings.Contains(errOut, "--seed testdata/no-such-seed") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

// lockedBuffer is a bytes.Buffer safe to read while the demo writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func netnsWithPrefix(t *testing.T, prefix string) []string {
	t.Helper()
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

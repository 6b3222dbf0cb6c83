package smtp

import (
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuilder is a strings.Builder a logger and a test share.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRefusalLogIntervals checks the summary a refusalLog writes when its
// interval ends, the next interval while refusals go on, and the quiet
// after which a refusal is logged at once again.
func TestRefusalLogIntervals(t *testing.T) {
	out := &lockedBuilder{}
	r := &refusalLog{
		log:   slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelInfo})),
		every: 50 * time.Millisecond,
	}
	defer r.stop()
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	b2 := netip.MustParseAddr("2001:db8::2") // b's /64
	r.refused(a, 5)
	r.refused(a, 5)
	r.refused(b, 5)
	r.refused(b2, 5)
	wait := func(n int) []string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) >= n || time.Now().After(deadline) {
				return lines
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	lines := wait(2)
	want := []string{
		`msg="smtp: connection limit reached" ip=192.0.2.1 sessions=5`,
		`msg="smtp: connections turned away at a limit" count=3 clients=2 top=2001:db8:: top_count=2 interval=50ms`,
	}
	if len(lines) != len(want) {
		t.Fatalf("lines %q, want %d", lines, len(want))
	}
	for i := range want {
		if !strings.HasSuffix(lines[i], want[i]) {
			t.Errorf("line %d: %q, want it to end with %q", i, lines[i], want[i])
		}
	}
	// The next interval had nothing: quiet, and a refusal is logged at once.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		r.mu.Lock()
		quiet := r.timer == nil
		r.mu.Unlock()
		if quiet || time.Now().After(deadline) {
			break
		}
	}
	r.refused(b, 1)
	if lines := wait(3); len(lines) != 3 || !strings.HasSuffix(lines[2], `msg="smtp: connection limit reached" ip=2001:db8::1 sessions=1`) {
		t.Errorf("after a quiet interval: %q", lines)
	}
}

package gateway

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestFreeSpaceAnswersFromItsLastFigure: within freeSpaceAge freeSpace
// answers without asking the kernel again, so 8 MiB written meanwhile do
// not show; a folder that is not there is an error, not a figure.
func TestFreeSpaceAnswersFromItsLastFigure(t *testing.T) {
	dir := t.TempDir()
	// A loaded machine may take longer than freeSpaceAge between the two
	// calls: then the check tells nothing, and is made again.
	for try := 0; ; try++ {
		free := freeSpace(dir)
		start := time.Now()
		first, err := free()
		if err != nil || first <= 0 {
			t.Fatalf("freeSpace = %d, %v", first, err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprint("fill", try)), make([]byte, 8<<20), 0o600); err != nil {
			t.Fatal(err)
		}
		again, err := free()
		if time.Since(start) >= freeSpaceAge && try < 10 {
			continue
		}
		if err != nil || again != first {
			t.Errorf("within %v: %d, %v; want the first figure %d", freeSpaceAge, again, err, first)
		}
		break
	}
	if n, err := freeSpace(filepath.Join(dir, "absent"))(); err == nil {
		t.Errorf("freeSpace of an absent folder = %d, nil; want an error", n)
	}
}

// TestTLSSessionsOption: delivery's tls_sessions = 0 turns resumption
// off (SMTPOptions.TLSSessions < 0), where the transport's own 0 would
// mean its default.
func TestTLSSessionsOption(t *testing.T) {
	for in, want := range map[int]int{0: -1, 1: 1, 1000: 1000} {
		if got := tlsSessions(in); got != want {
			t.Errorf("tlsSessions(%d) = %d, want %d", in, got, want)
		}
	}
}

package gateway

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/pickup"
)

// TestPickupBacksOff: a refused file that cannot be moved to failed/, and
// a stray entry that cannot be swept, are tried again later and later,
// not on every pass: a local user cannot make the server log an error
// every second.
func TestPickupBacksOff(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pickup")
	if err := pickup.Prepare(dir); err != nil {
		t.Fatal(err)
	}
	// failed/ is a file: no move into it can succeed.
	failed := filepath.Join(dir, pickup.FailedDir)
	if err := os.Remove(failed); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(failed, nil, 0o600)
	os.Mkdir(filepath.Join(dir, pickup.NewName(time.Now())), 0o755)
	os.Mkdir(filepath.Join(dir, "stray"), 0o755)
	var logs bytes.Buffer
	p := &pickupPart{dir: dir, log: slog.New(slog.NewTextHandler(&logs, nil)), waits: map[string]pickupWait{}, sent: map[string]bool{}}
	start := time.Now()
	for s := range 60 {
		p.pass(context.Background(), start.Add(time.Duration(s)*time.Second))
	}
	refused := strings.Count(logs.String(), "cannot be moved to failed/")
	sweeps := strings.Count(logs.String(), "cannot move stray entries")
	// 1, 2, 4, 8, 16 and 32 s apart; the sweep once in 5 min.
	if refused != 6 || sweeps != 1 {
		t.Errorf("in a minute: %d refusals and %d sweeps logged, want 6 and 1:\n%s", refused, sweeps, logs.String())
	}
}

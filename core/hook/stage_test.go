package hook

import (
	"testing"

	"github.com/mailgate/gateway/sdk"
)

// TestStageIndex fails when sdk gains a stage that the chain's per-stage
// table does not know.
func TestStageIndex(t *testing.T) {
	if len(sdk.Stages) != numStages {
		t.Fatalf("sdk.Stages has %d stages, numStages is %d", len(sdk.Stages), numStages)
	}
	seen := map[int]sdk.Stage{}
	for _, st := range sdk.Stages {
		i := stageIndex(st)
		if i < 0 || i >= numStages {
			t.Errorf("stageIndex(%q) = %d, want 0..%d", st, i, numStages-1)
			continue
		}
		if other, dup := seen[i]; dup {
			t.Errorf("stageIndex(%q) = stageIndex(%q) = %d", st, other, i)
		}
		seen[i] = st
	}
	if i := stageIndex("queue"); i != -1 {
		t.Errorf("stageIndex(unknown) = %d, want -1", i)
	}
}

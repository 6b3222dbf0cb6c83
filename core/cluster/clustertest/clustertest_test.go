package clustertest_test

import (
	"testing"
	"time"

	"github.com/mailgate/gateway/core/cluster/clustertest"
)

func TestStart(t *testing.T) {
	start := time.Now()
	c := clustertest.Start(t, 3)
	t.Logf("3 nodes ready in %v: %v", time.Since(start), c.URLs())
	if got := len(c.URLs()); got != 3 {
		t.Errorf("URLs: %d; want 3", got)
	}
}

package cluster_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/cluster/clustertest"
	"github.com/mailgate/gateway/core/queue"
)

// TestTakeoverOfParkedMailIsDue: gw1 delivers one recipient of a message
// and parks it for the other, whose destination it found down (its next
// attempt an hour away), which sends the copy the record with the
// parking; it holds a second message, also parked. gw2, which takes both
// over from the copies as a takeover does (Copies, Import), knows nothing
// of the destinations gw1 found down: the first is due at once there, not
// in an hour, with bob still delivered and the attempts kept; the second
// stays held until the operator releases it, and is then due at once.
func TestTakeoverOfParkedMailIsDue(t *testing.T) {
	nc := clustertest.Start(t, 3)
	c := connect(t, nc, nil, 0, 1, 2)
	gw1 := spoolWithReplica(t, c, "gw1")
	parkedUntil := time.Now().Add(time.Hour)
	park := func(m *queue.Message) error {
		m.Attempts, m.NextAttempt = 1, parkedUntil
		return nil
	}
	partly, err := commitMessage(t, gw1, "bob@live.example", 300)
	if err != nil {
		t.Fatal(err)
	}
	held, err := commitMessage(t, gw1, "dave@down.example", 300)
	if err != nil {
		t.Fatal(err)
	}
	addCarol := addRecipient("carol", "down.example")
	bobDeliveredCarolParked := func(m *queue.Message) error {
		m.Recipients[0] = queue.RecipientState{Status: queue.Delivered, LastReply: "250 2.0.0 taken", Attempts: 1}
		m.Recipients[1] = queue.RecipientState{Status: queue.Deferred, LastReply: "451 4.4.1 no answer", Attempts: 1}
		return park(m)
	}
	hold := func(m *queue.Message) error { m.Held = true; return nil }
	for _, step := range []struct {
		id string
		fn func(*queue.Message) error
	}{{partly, addCarol}, {partly, bobDeliveredCarolParked}, {held, park}, {held, hold}} {
		if err := gw1.Update(context.Background(), step.id, step.fn); err != nil {
			t.Fatal(err)
		}
	}
	// The updates are sent without waiting: wait for the copies to say so.
	if !waitFor(5*time.Second, func() bool {
		got := copies(t, c, "gw1")
		p, err1 := queue.DecodeRecord(got[partly].Record)
		h, err2 := queue.DecodeRecord(got[held].Record)
		return err1 == nil && err2 == nil && p.Attempts == 1 && h.Held
	}) {
		t.Fatal("the copies never learnt bob's delivery and the hold")
	}

	gw2 := spoolWithReplica(t, c, "gw2")
	taken := map[string]string{} // gw1's ID → gw2's
	for from, cp := range copies(t, c, "gw1") {
		id, err := gw2.Import(context.Background(), cp.Record, cp.Body)
		if err != nil {
			t.Errorf("importing %s: %v", from, err)
			continue
		}
		taken[from] = id
	}
	if taken[partly] == "" {
		t.FailNow()
	}
	m, err := gw2.Get(taken[partly])
	if err != nil {
		t.Fatal(err)
	}
	if m.Recipients[0].Status != queue.Delivered || m.Attempts != 1 {
		t.Errorf("gw2's message: bob %v, %d attempts; want bob delivered, 1 attempt", m.Recipients[0].Status, m.Attempts)
	}
	if due := dueNow(t, gw2); !slices.Equal(due, []string{taken[partly]}) {
		t.Errorf("due on gw2 after the takeover: %v; want %s at once (gw1's parking until %v is not gw2's), not the held %s",
			due, taken[partly], parkedUntil.Format(time.TimeOnly), taken[held])
	}
	if taken[held] == "" {
		t.FailNow()
	}
	if err := gw2.Update(context.Background(), taken[held], func(m *queue.Message) error { m.Held = false; return nil }); err != nil {
		t.Fatal(err)
	}
	if due := dueNow(t, gw2); len(due) != 2 {
		t.Errorf("due on gw2 after the release: %v; want both", due)
	}
}

// dueNow lists the IDs of s's messages due now.
func dueNow(t *testing.T, s *queue.Spool) []string {
	t.Helper()
	var due []string
	if err := s.DueIDs(time.Now(), func(id string, _ time.Time) bool { due = append(due, id); return true }); err != nil {
		t.Fatal(err)
	}
	return due
}

package queue

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestReschedule: in one transaction, the messages that are not held and
// not yet due become due at the time given, and move in the schedule;
// held, due and unknown ones are passed over.
func TestReschedule(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{})
	now := testNow()
	ids := make([]string, 4)
	for i := range ids {
		ids[i] = commit(t, s, testEnvelope("bob@example.com"), nil, []byte("x\r\n"), 10)
	}
	set := func(id string, next time.Time, held bool) {
		t.Helper()
		if err := s.Update(t.Context(), id, func(m *Message) error { m.NextAttempt, m.Held = next, held; return nil }); err != nil {
			t.Fatalf("Update: %v", err)
		}
	}
	set(ids[0], now.Add(time.Hour), false)    // parked: rescheduled
	set(ids[1], now.Add(2*time.Hour), false)  // parked: rescheduled
	set(ids[2], now.Add(time.Hour), true)     // held: passed over
	set(ids[3], now.Add(-time.Minute), false) // due already: passed over
	batches := s.Stats().Batches

	n, err := s.Reschedule(t.Context(), append(slices.Clone(ids), "06zzzzzzzzzzzzzz"), now)
	if err != nil || n != 2 {
		t.Fatalf("Reschedule = %d, %v; want 2, nil", n, err)
	}
	if b := s.Stats().Batches - batches; b != 1 {
		t.Errorf("%d transactions; want 1", b)
	}
	want := map[string]time.Time{ids[0]: now, ids[1]: now, ids[2]: now.Add(time.Hour), ids[3]: now.Add(-time.Minute)}
	for id, at := range want {
		m, err := s.Get(id)
		if err != nil || !m.NextAttempt.Equal(at) {
			t.Errorf("%s: NextAttempt %v, %v; want %v", id, m.NextAttempt, err, at)
		}
	}
	got := dueIDs(t, s, now)
	slices.Sort(got)
	wantDue := []string{ids[0], ids[1], ids[3]}
	slices.Sort(wantDue)
	if diff := cmp.Diff(wantDue, got); diff != "" {
		t.Errorf("due at now (-want +got):\n%s", diff)
	}
}

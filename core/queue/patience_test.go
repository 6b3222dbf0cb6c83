package queue

import (
	"sync"
	"testing"
	"time"
)

// TestPatientWritesShareTransactions checks the commit loop's rule for
// patient writes (Replace, Delete): alone they start one transaction for
// all of them after patience; with a commit they ride on its
// transaction at once; either way they are durable when they return.
func TestPatientWritesShareTransactions(t *testing.T) {
	dir := t.TempDir()
	// A patience long enough that the n writers below reach the loop
	// within it on a loaded machine.
	const wait = 300 * time.Millisecond
	s := openSpool(t, dir, Options{patience: wait})
	const n = 8
	var olds []*Message
	for range n + 1 {
		id := commit(t, s, testEnvelope("bob@example.com"), []byte("H: 1\r\n"), []byte("body\r\n"), 100)
		m, err := s.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		olds = append(olds, m)
	}
	later := testNow().Add(time.Hour)

	// n patient writes at once and nothing else: one transaction, and
	// none before the patience has passed.
	before := s.Stats().Batches
	start := time.Now()
	var wg sync.WaitGroup
	for _, old := range olds[:n] {
		wg.Go(func() {
			m := *old
			m.NextAttempt = later
			if err := s.Replace(t.Context(), old, &m); err != nil {
				t.Errorf("Replace: %v", err)
			}
		})
	}
	wg.Wait()
	if took := time.Since(start); took < wait {
		t.Errorf("patient writes alone were written after %v, want at least %v", took, wait)
	}
	if got := s.Stats().Batches - before; got != 1 {
		t.Errorf("%d patient writes took %d transactions, want 1", n, got)
	}

	// A patient write and a commit: the commit's transaction carries
	// both. The second spool's patience is an hour, so the delete can
	// only end by riding on a commit.
	s.Close()
	s = openSpool(t, dir, Options{patience: time.Hour})
	before = s.Stats().Batches
	done := make(chan error, 1)
	go func() { done <- s.Delete(t.Context(), olds[n].ID) }()
	select {
	case err := <-done:
		t.Fatalf("a patient delete alone ended (%v) before its patience", err)
	case <-time.After(50 * time.Millisecond):
	}
	commits := int64(0)
	for ended := false; !ended; {
		// One commit normally; another if the delete reached the loop
		// only after the first (a very slow machine).
		commit(t, s, testEnvelope("carol@example.com"), []byte("H: 1\r\n"), []byte("body\r\n"), 100)
		commits++
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Delete: %v", err)
			}
			ended = true
		case <-time.After(time.Second):
		}
	}
	if got := s.Stats().Batches - before; got != commits {
		t.Errorf("a delete and %d commits took %d transactions, want %d", commits, got, commits)
	}

	// Durable when they returned: all there after a reopen.
	s.Close()
	s = openSpool(t, dir, Options{})
	if _, err := s.Get(olds[n].ID); err == nil {
		t.Errorf("deleted message %s is back after reopening", olds[n].ID)
	}
	for _, old := range olds[:n] {
		m, err := s.Get(old.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !m.NextAttempt.Equal(later) {
			t.Errorf("%s: next attempt %v after reopening, want %v", old.ID, m.NextAttempt, later)
		}
	}
}

package main

// gateway sink --journal: the floor of a durable server, for benchmarks.

import (
	"fmt"
	"os"
	"sync"
)

// sinkJournal appends each committed message to one file and syncs the
// file before the commit returns, so that the sink answers 250 only once
// the message is on disk, as `gateway serve` does. Messages committed while
// a sync runs share the next one (group commit, led by the first of them:
// no goroutine of its own). It keeps no index, queue or envelope: what it
// costs is what a durable server cannot avoid, the session layer plus one
// synchronous append per batch, against which the spool's cost is read.
type sinkJournal struct {
	f *os.File

	mu      sync.Mutex
	synced  *sync.Cond
	pending []byte // records of batch next, not written yet
	spare   []byte // the buffer of the batch last written, for reuse
	next    uint64 // the batch new records join
	done    uint64 // the last batch written and synced
	syncing bool   // a leader is writing a batch
	err     error  // the first write or sync that failed: every later commit fails
}

// openSinkJournal creates (or truncates) the journal file at path.
func openSinkJournal(path string) (*sinkJournal, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sink: journal: %w", err)
	}
	j := &sinkJournal{f: f, next: 1}
	j.synced = sync.NewCond(&j.mu)
	return j, nil
}

// append writes the record made of parts and returns once it is synced.
func (j *sinkJournal) append(parts ...[]byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, p := range parts {
		j.pending = append(j.pending, p...)
	}
	mine := j.next
	for j.done < mine && j.err == nil {
		if j.syncing {
			j.synced.Wait()
			continue
		}
		j.writeBatch()
	}
	if j.err != nil {
		return fmt.Errorf("sink: journal: %w", j.err)
	}
	return nil
}

// writeBatch writes and syncs the pending batch with j.mu released, then
// wakes its members. Called with j.mu held by the batch's leader.
func (j *sinkJournal) writeBatch() {
	batch, buf := j.next, j.pending
	j.next++
	j.pending, j.syncing = j.spare[:0], true
	j.mu.Unlock()
	_, err := j.f.Write(buf)
	if err == nil {
		err = j.f.Sync()
	}
	j.mu.Lock()
	j.spare, j.syncing, j.done = buf, false, batch
	if err != nil && j.err == nil {
		j.err = err
	}
	j.synced.Broadcast()
}

// Close closes the file.
func (j *sinkJournal) Close() error { return j.f.Close() }

package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// Batches of a salvage: messages and bytes per transaction of the new
// spool.
const (
	salvageBatch      = 256
	salvageBatchBytes = 16 << 20
)

// Salvage copies into a new spool in out (a folder that does not exist or
// is empty) every message of the spool in dir whose record and whole body
// it can read, with its delivery state, and every key-value entry it can
// read; the schedule is rebuilt from the records. It never changes the
// spool in dir. Messages found only in pages outside the tree
// (Report.Loose) may be copies of messages already delivered, so they are
// held in the new spool: release them after a look. Messages whose body
// cannot be read are not copied; the Report names each.
func Salvage(ctx context.Context, dir, out string) (*Report, error) {
	if err := emptyDir(out); err != nil {
		return nil, err
	}
	sc, err := scanSpool(dir)
	if err != nil {
		return nil, err
	}
	defer sc.close()
	dst, err := Open(out, Options{})
	if err != nil {
		return nil, err
	}
	err = sc.copyTo(ctx, dst)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	return &sc.report, err
}

// emptyDir checks that dir does not exist or is an empty folder.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("queue: salvage: %w", err)
	case len(entries) > 0:
		return fmt.Errorf("queue: salvage: %s is not empty: give a new folder", dir)
	}
	return nil
}

// copyTo writes every complete message and the key-value entries into
// dst, batch by batch.
func (sc *spoolScan) copyTo(ctx context.Context, dst *Spool) error {
	var batch []restored
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := syncDir(dst.bodiesDir); err != nil {
			return fmt.Errorf("queue: salvage: %w", err)
		}
		err := dst.restore(ctx, batch)
		if err == nil {
			sc.report.Copied += len(batch)
		}
		batch, size = batch[:0], 0
		return err
	}
	for _, f := range sc.complete() {
		r, err := sc.prepare(f, dst)
		if err != nil {
			sc.report.problem("message %s: %v", f.m.ID, err)
			sc.report.Lost++
			continue
		}
		sc.count(f)
		batch, size = append(batch, r), size+len(r.body)
		if len(batch) >= salvageBatch || size >= salvageBatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	return dst.restoreKV(ctx, sc.kv)
}

// restored is one message as Salvage writes it: its record, what goes in
// the bodies bucket, and its schedule key (nil: held).
type restored struct {
	key, rec, body, sched []byte
}

// prepare reads f's body, copies its body file into dst, and returns
// what to write; a message found in a loose page is held.
func (sc *spoolScan) prepare(f *found, dst *Spool) (restored, error) {
	body, err := f.body.read()
	if err != nil {
		return restored{}, fmt.Errorf("read its body: %w", err)
	}
	if f.m.spilled {
		if err := copyBodyFile(filepath.Join(sc.dir, bodiesDir, f.m.ID), filepath.Join(dst.bodiesDir, f.m.ID), f.file); err != nil {
			return restored{}, err
		}
	}
	rec := f.rec
	if f.loose {
		f.m.Held = true
		if rec, err = encodeMessage(f.m); err != nil {
			return restored{}, err
		}
	}
	return restored{key: []byte(f.m.ID), rec: rec, body: body, sched: scheduleKey(f.m)}, nil
}

// copyBodyFile copies the body file from to to, fsync'd, and checks that
// it has size bytes.
func copyBodyFile(from, to string, size int64) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, in)
	if err == nil && n != size {
		err = fmt.Errorf("read its body file: %d of %d bytes", n, size)
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(to) // ours, just made, and not referred to by any record
	}
	return err
}

// restore writes batch in one transaction of the commit loop.
func (s *Spool) restore(ctx context.Context, batch []restored) error {
	return s.submit(ctx, &request{
		name:  "salvage",
		delta: int64(len(batch)),
		apply: func(tx *bolt.Tx) error {
			msgs, bodies, sched := tx.Bucket(bucketMessages), tx.Bucket(bucketBodies), tx.Bucket(bucketSchedule)
			for _, r := range batch {
				if err := bodies.Put(r.key, r.body); err != nil {
					return &writeError{fmt.Errorf("queue: salvage %s: %w", r.key, err)}
				}
				if r.sched != nil {
					if err := sched.Put(r.sched, nil); err != nil {
						return &writeError{fmt.Errorf("queue: salvage %s: %w", r.key, err)}
					}
				}
				if err := msgs.Put(r.key, r.rec); err != nil {
					return &writeError{fmt.Errorf("queue: salvage %s: %w", r.key, err)}
				}
			}
			return nil
		},
	})
}

// restoreKV writes the key-value entries as they were stored.
func (s *Spool) restoreKV(ctx context.Context, entries []kvEntry) error {
	for len(entries) > 0 {
		n := min(len(entries), 4*salvageBatch)
		part := entries[:n]
		entries = entries[n:]
		err := s.submit(ctx, &request{
			name: "salvage kv",
			apply: func(tx *bolt.Tx) error {
				for _, e := range part {
					if err := kvPut(tx, string(e.key), e.value); err != nil {
						return err
					}
				}
				return nil
			},
		})
		if err != nil {
			return err
		}
	}
	return nil
}

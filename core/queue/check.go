package queue

// Check and Salvage are for the operator of a spool that will not open, or
// that opened with errors in its log. Both read spool.db through the page
// walker (dbfile.go), never through bbolt, so that a damaged file is read
// as far as it can be and never crashes them, and neither changes the
// spool they read.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Report is what Check or Salvage found in a spool.
type Report struct {
	Dir      string   // the spool directory
	Problems []string // what is damaged or lost, one line each; none: the spool is sound
	Messages int      // messages whose record and whole body were read
	Spilled  int      // of those, with the content in a body file
	Loose    int      // of those, found only in pages outside the tree (see Salvage)
	Lost     int      // records read whose body could not be
	KV       int      // key-value entries read
	Orphans  int      // body files no record refers to (Open moves them to orphans/)
	Copied   int      // Salvage: messages copied into the new spool
}

// Damaged reports whether damage was found.
func (r *Report) Damaged() bool { return len(r.Problems) > 0 }

func (r *Report) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// Check reads the spool in dir without changing it: every page of
// spool.db's tree, every record and every body, inline or in its file. It
// reports what it could read and what not; when the tree is damaged it
// also looks for records in the pages outside it, as Salvage would. The
// error is for a spool it could not read at all (or one a gateway has
// open); damage is in the Report.
func Check(dir string) (*Report, error) {
	sc, err := scanSpool(dir)
	if err != nil {
		return nil, err
	}
	defer sc.close()
	for _, f := range sc.complete() {
		if _, err := sc.body(f); err != nil {
			sc.report.problem("message %s: %v", f.m.ID, err)
			sc.report.Lost++
			continue
		}
		sc.count(f)
	}
	return &sc.report, nil
}

// found is one message record as a scan found it.
type found struct {
	m     *Message
	rec   []byte   // the record as stored
	loose bool     // found in a page outside the tree
	body  valueRef // header and content, or only the header of a spilled body
	file  int64    // the size of bodies/<id>, if spilled
}

// spoolScan is what a scan of a spool found.
type spoolScan struct {
	dir    string
	f      *os.File  // spool.db, locked; nil if missing
	d      *boltFile // nil if spool.db is missing or empty
	msgs   map[string]*found
	bodies map[string]valueRef
	files  map[string]int64 // body files and their sizes
	kv     []kvEntry
	report Report
}

type kvEntry struct{ key, value []byte }

func (sc *spoolScan) close() {
	if sc.f != nil {
		sc.f.Close()
	}
}

func newSpoolScan(dir string) *spoolScan {
	return &spoolScan{dir: dir, msgs: map[string]*found{}, bodies: map[string]valueRef{}, files: map[string]int64{}, report: Report{Dir: dir}}
}

// scanSpool reads the records, the places of the bodies and the body
// files of the spool in dir.
func scanSpool(dir string) (*spoolScan, error) {
	sc := newSpoolScan(dir)
	if err := sc.readFiles(); err != nil {
		return nil, err
	}
	if err := sc.readDB(); err != nil {
		sc.close()
		return nil, err
	}
	sc.report.KV = len(sc.kv)
	referred := map[string]bool{}
	for id, f := range sc.msgs {
		if f.m.spilled {
			referred[id] = true
		}
	}
	for id := range sc.files {
		if !referred[id] {
			sc.report.Orphans++
		}
	}
	return sc, nil
}

// readFiles lists the body files.
func (sc *spoolScan) readFiles() error {
	entries, err := os.ReadDir(filepath.Join(sc.dir, bodiesDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	for _, e := range entries {
		if !validID(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("queue: %w", err)
		}
		sc.files[e.Name()] = info.Size()
	}
	return nil
}

// readDB walks spool.db, locked against a gateway opening it meanwhile.
func (sc *spoolScan) readDB() error {
	path := filepath.Join(sc.dir, dbFile)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		sc.report.problem("%s is missing", path)
		sc.freshBesideBodies(path)
		return nil
	}
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	sc.f = f
	if err := lockShared(f); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if st.Size() == 0 {
		sc.report.problem("%s is empty (0 bytes)", path)
		sc.freshBesideBodies(path)
		return nil
	}
	sc.readTree(f, path, st.Size())
	return nil
}

// readTree walks the bbolt file r, and the pages outside its tree if it
// lost a part.
func (sc *spoolScan) readTree(r io.ReaderAt, path string, size int64) {
	sc.d = readBoltFile(r, path, size)
	sc.d.walk(sc.visit)
	sc.report.Problems = append(sc.report.Problems, sc.d.problems...)
	if len(sc.d.lost) > 0 {
		sc.scanLoose()
	}
}

func (sc *spoolScan) freshBesideBodies(path string) {
	if n := len(sc.files); n > 0 {
		sc.report.problem("%s holds %d message bodies whose records were in %s", filepath.Join(sc.dir, bodiesDir), n, path)
	}
}

// visit takes one key of the tree: a record, a body or a key-value entry.
func (sc *spoolScan) visit(bucket string, key []byte, v valueRef) {
	switch bucket {
	case string(bucketMessages):
		b, err := v.read()
		if err != nil {
			sc.report.problem("record %q: %v", key, err)
			return
		}
		m, err := decodeMessage(b)
		switch {
		case err != nil:
			sc.report.problem("record %q: %v", key, err)
		case !validID(string(key)) || m.ID != string(key):
			sc.report.problem("record %q: holds message %q", key, m.ID)
		default:
			sc.msgs[m.ID] = &found{m: m, rec: b}
		}
	case string(bucketBodies):
		sc.bodies[string(key)] = v
	case string(bucketKV):
		b, err := v.read()
		if err != nil {
			sc.report.problem("key-value entry %q: %v", key, err)
			return
		}
		sc.kv = append(sc.kv, kvEntry{slices.Clone(key), b})
	}
}

// complete returns, in ID order, the records whose body is where the
// record says and as long as it says, and reports the others as lost.
func (sc *spoolScan) complete() []*found {
	ids := make([]string, 0, len(sc.msgs))
	for id := range sc.msgs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []*found
	for _, id := range ids {
		f := sc.msgs[id]
		if err := sc.place(f); err != nil {
			sc.report.problem("message %s (from <%s>, %d recipients): %v", id, f.m.Envelope.Sender, len(f.m.Envelope.Recipients), err)
			sc.report.Lost++
			continue
		}
		out = append(out, f)
	}
	return out
}

// place finds f's body and checks its size.
func (sc *spoolScan) place(f *found) error {
	v, ok := sc.bodies[f.m.ID]
	if !ok {
		return errors.New("its body is missing from spool.db")
	}
	f.body = v
	if !f.m.spilled {
		if int64(v.n) != f.m.Size {
			return fmt.Errorf("its body has %d bytes, the record says %d", v.n, f.m.Size)
		}
		return nil
	}
	size, ok := sc.files[f.m.ID]
	want := f.m.Size - int64(v.n)
	switch {
	case !ok:
		return fmt.Errorf("its body file %s is missing", filepath.Join(sc.dir, bodiesDir, f.m.ID))
	case size != want:
		return fmt.Errorf("its body file %s has %d bytes, the record says %d", filepath.Join(sc.dir, bodiesDir, f.m.ID), size, want)
	}
	f.file = size
	return nil
}

// body reads f's header and content from spool.db, and its body file (if
// spilled) to the end, and returns the part in spool.db.
func (sc *spoolScan) body(f *found) ([]byte, error) {
	b, err := f.body.read()
	if err != nil {
		return nil, fmt.Errorf("read its body: %w", err)
	}
	if f.m.spilled {
		file, err := os.Open(filepath.Join(sc.dir, bodiesDir, f.m.ID))
		if err != nil {
			return nil, err
		}
		defer file.Close()
		if n, err := io.Copy(io.Discard, file); err != nil || n != f.file {
			return nil, fmt.Errorf("read its body file: %d of %d bytes: %v", n, f.file, err)
		}
	}
	return b, nil
}

// count adds f, read whole, to the report.
func (sc *spoolScan) count(f *found) {
	sc.report.Messages++
	if f.m.spilled {
		sc.report.Spilled++
	}
	if f.loose {
		sc.report.Loose++
	}
}

// progress orders versions of one record found in loose pages: the one
// with more attempts made, then the one changed last, is the later.
func progress(m *Message) (attempts int, updated time.Time) {
	attempts = m.Attempts
	for _, r := range m.Recipients {
		attempts += r.Attempts
		if r.Updated.After(updated) {
			updated = r.Updated
		}
	}
	return attempts, updated
}

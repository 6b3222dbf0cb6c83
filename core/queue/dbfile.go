package queue

// This file reads spool.db as bbolt lays it out (file format version 2),
// page by page with ReadAt, without bbolt and without a memory map,
// checking each structure before it follows it. It stands between a
// damaged file and bbolt, which trusts its file: Open with NoFreelistSync
// walks every page of the tree on a goroutine of its own, where a page of
// an unknown type panics and a page past the end of a truncated file
// faults (SIGBUS), and neither can be recovered. So Open walks the tree
// here first and refuses what bbolt would crash on, and check and salvage
// read records and bodies through it from files bbolt cannot open at all.
//
// The layout (all integers in the machine's byte order, as bbolt writes
// them):
//
//	page      id u64, flags u16, count u16, overflow u32, then the data;
//	          a page spans 1+overflow pages of the file
//	meta      pages 0 and 1: magic u32, version u32, page size u32,
//	          flags u32, root bucket (root u64, sequence u64), freelist
//	          u64, high-water mark u64 (pages in use), txid u64,
//	          checksum u64 (FNV-1a 64 of what precedes it)
//	branch    count elements of pos u32, ksize u32, child u64; the key is
//	          at the element's offset + pos
//	leaf      count elements of flags u32, pos u32, ksize u32, vsize u32;
//	          the key at the element's offset + pos, the value after it;
//	          flags bit 0 marks a bucket, whose value is root u64,
//	          sequence u64 and, when root is 0, an inline leaf page
//	freelist  count (0xFFFF: the count is the first u64) page ids u64

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"strings"
)

// checkBoltFile walks the bbolt file at path, reading every page of its tree
// but no value that is not a bucket, and returns a *DamageError that names
// the file and what is wrong with it, if anything. A file that does not
// exist or has no bytes is fresh: bbolt will make a new database of it.
func checkBoltFile(path string) (fresh bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	// A gateway writing the file holds bbolt's exclusive lock: its pages
	// may be half written, so say it is in use rather than damaged.
	if err := lockShared(f); err != nil {
		return false, err
	}
	st, err := f.Stat()
	if err != nil {
		return false, err
	}
	if st.Size() == 0 {
		return true, nil
	}
	d := readBoltFile(f, path, st.Size())
	if len(d.problems) == 0 {
		d.walk(nil)
	}
	return false, d.err()
}

const (
	pageHeaderSize   = 16
	elemSize         = 16 // branch and leaf elements alike
	bucketHeaderSize = 16
	metaSize         = 64
	metaMagic        = 0xED0CDAED
	metaVersion      = 2
	noFreelist       = ^uint64(0)

	flagBranch   = 0x01
	flagLeaf     = 0x02
	flagFreelist = 0x10
	leafIsBucket = 0x01

	minPageSize = 1 << 10 // bbolt looks for the second meta page from 1 KiB
	maxPageSize = 1 << 24 // …up to 16 MiB
	maxDepth    = 128     // branch levels and nested buckets together
)

var byteOrder = binary.NativeEndian

// boltMeta is the meta page bbolt would use.
type boltMeta struct {
	pageSize uint64
	root     uint64 // page of the root bucket; 0: no usable meta page
	freelist uint64 // noFreelist: rebuilt by scanning at Open
	hwm      uint64 // pages in use: the tree is in pages [2, hwm)
	txid     uint64
}

// lostRange is the part of a bucket's keys, [lo, hi) (nil: unbounded),
// under a page the walk could not read.
type lostRange struct {
	bucket string
	lo, hi []byte
}

func (r lostRange) contains(k []byte) bool {
	return (r.lo == nil || bytes.Compare(k, r.lo) >= 0) && (r.hi == nil || bytes.Compare(k, r.hi) < 0)
}

// boltFile is one walk over a bbolt file.
type boltFile struct {
	r     io.ReaderAt
	path  string
	size  int64
	meta  boltMeta
	pages uint64 // whole pages in the file

	window   []byte // bytes of the file read ahead, from windowAt
	windowAt int64
	pageBufs [][]byte // a page buffer per depth of the walk: a page's keys stay valid below it
	reached  []bool   // pages the walk has read, so none is read twice
	mute     bool     // problems are not recorded
	problems []string
	lost     []lostRange
}

// readBoltFile reads the meta pages of the bbolt file r of size bytes.
// What is wrong with them is a problem; without a usable meta page
// (meta.root is 0) the walk finds nothing, and pages are counted in the
// machine's page size.
func readBoltFile(r io.ReaderAt, path string, size int64) *boltFile {
	d := &boltFile{r: r, path: path, size: size}
	m, err := d.readMeta()
	if err != nil {
		d.problem("%v", err)
		m = boltMeta{pageSize: uint64(os.Getpagesize())}
	}
	d.meta = m
	d.pages = uint64(size) / m.pageSize
	if m.hwm > d.pages {
		d.problem("truncated: the tree takes %d pages of %d bytes (%d bytes), the file has %d bytes",
			m.hwm, m.pageSize, m.hwm*m.pageSize, size)
	}
	d.reached = make([]bool, d.pages) // no page past the file's end is read
	return d
}

// readMeta picks the meta page as bbolt does (the valid one of the two
// with the higher txid) and checks what it says.
func (d *boltFile) readMeta() (boltMeta, error) {
	if d.size < 2*minPageSize {
		return boltMeta{}, fmt.Errorf("truncated: %d bytes, too short for the two meta pages", d.size)
	}
	m0, err0 := d.metaAt(0)
	ps := m0.pageSize
	if err0 != nil {
		ps = d.secondMetaPageSize()
	}
	if ps == 0 {
		return boltMeta{}, fmt.Errorf("no valid meta page: meta page 0: %w; no meta page 1 found", err0)
	}
	m1, err1 := d.metaAt(int64(ps))
	a, errA, b, errB := m0, err0, m1, err1
	if m1.txid > m0.txid {
		a, errA, b, errB = m1, err1, m0, err0
	}
	m := a
	if errA != nil {
		if errB != nil {
			return boltMeta{}, fmt.Errorf("no valid meta page: meta page 0: %w; meta page 1: %w", err0, err1)
		}
		m = b
	}
	switch {
	case m.pageSize != ps:
		return boltMeta{}, fmt.Errorf("the meta pages disagree on the page size (%d, %d)", m0.pageSize, m1.pageSize)
	case m.hwm < 3 || m.hwm > 1<<48:
		return boltMeta{}, fmt.Errorf("meta page: a tree of %d pages", m.hwm)
	case m.root < 2 || m.root >= m.hwm:
		return boltMeta{}, fmt.Errorf("meta page: root page %d outside the tree [2, %d)", m.root, m.hwm)
	case m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= m.hwm):
		return boltMeta{}, fmt.Errorf("meta page: freelist page %d outside the tree [2, %d)", m.freelist, m.hwm)
	}
	return m, nil
}

// metaAt reads and validates the meta page at off.
func (d *boltFile) metaAt(off int64) (boltMeta, error) {
	b := make([]byte, pageHeaderSize+metaSize)
	if _, err := d.r.ReadAt(b, off); err != nil {
		return boltMeta{}, fmt.Errorf("read: %w", err)
	}
	b = b[pageHeaderSize:]
	h := fnv.New64a()
	h.Write(b[:metaSize-8])
	m := boltMeta{
		pageSize: uint64(byteOrder.Uint32(b[8:])),
		root:     byteOrder.Uint64(b[16:]),
		freelist: byteOrder.Uint64(b[32:]),
		hwm:      byteOrder.Uint64(b[40:]),
		txid:     byteOrder.Uint64(b[48:]),
	}
	switch {
	case byteOrder.Uint32(b) != metaMagic:
		return m, errors.New("not a bbolt meta page (bad magic)")
	case byteOrder.Uint32(b[4:]) != metaVersion:
		return m, fmt.Errorf("file format version %d, want %d", byteOrder.Uint32(b[4:]), metaVersion)
	case byteOrder.Uint64(b[56:]) != h.Sum64():
		return m, errors.New("checksum mismatch")
	case m.pageSize < minPageSize || m.pageSize > maxPageSize || m.pageSize&(m.pageSize-1) != 0:
		return m, fmt.Errorf("page size %d", m.pageSize)
	}
	return m, nil
}

// secondMetaPageSize looks for a valid meta page 1 where bbolt does when
// meta page 0 is unreadable, and returns its page size, or 0.
func (d *boltFile) secondMetaPageSize() uint64 {
	for ps := int64(minPageSize); ps <= maxPageSize && ps < d.size-minPageSize; ps <<= 1 {
		if m, err := d.metaAt(ps); err == nil && m.pageSize == uint64(ps) {
			return m.pageSize
		}
	}
	return 0
}

// readWindow is how much of the file a walk reads at once: bbolt writes a
// growing tree's pages mostly in order, and one read of many pages costs
// less than many reads of one.
const readWindow = 64 << 10

// readAt fills b with the file's bytes at off, through the window.
func (d *boltFile) readAt(b []byte, off int64) error {
	if len(b) > readWindow {
		_, err := d.r.ReadAt(b, off)
		return err
	}
	if off < d.windowAt || off+int64(len(b)) > d.windowAt+int64(len(d.window)) {
		n := min(readWindow, d.size-off)
		if n < int64(len(b)) {
			return io.ErrUnexpectedEOF
		}
		if cap(d.window) < readWindow {
			d.window = make([]byte, readWindow)
		}
		d.window = d.window[:n]
		if _, err := d.r.ReadAt(d.window, off); err != nil {
			d.window = d.window[:0]
			return err
		}
		d.windowAt = off
	}
	copy(b, d.window[off-d.windowAt:])
	return nil
}

// pageBuf returns the page buffer of depth.
func (d *boltFile) pageBuf(depth int) []byte {
	for len(d.pageBufs) <= depth {
		d.pageBufs = append(d.pageBufs, make([]byte, d.meta.pageSize))
	}
	return d.pageBufs[depth]
}

func (d *boltFile) problem(format string, args ...any) {
	if d.mute {
		return
	}
	d.problems = append(d.problems, fmt.Sprintf(format, args...))
}

// err returns the problems found so far as a *DamageError, or nil.
func (d *boltFile) err() error {
	if len(d.problems) == 0 {
		return nil
	}
	return &DamageError{Path: d.path, Problems: d.problems}
}

// DamageError is what is wrong with a damaged spool.db. It matches
// ErrDamaged.
type DamageError struct {
	Path     string   // the file
	Problems []string // what is wrong, one line each
}

// Error names the file and spells out the first three problems.
func (e *DamageError) Error() string {
	shown := e.Problems[:min(3, len(e.Problems))]
	more := ""
	if n := len(e.Problems) - len(shown); n > 0 {
		more = fmt.Sprintf(" (and %d more)", n)
	}
	return fmt.Sprintf("%s is damaged: %s%s", e.Path, strings.Join(shown, "; "), more)
}

// Is reports whether target is ErrDamaged.
func (e *DamageError) Is(target error) bool { return target == ErrDamaged }

// treePage is a branch or leaf page of the tree (or the inline page of a
// bucket), checked: its elements, keys and values lie within it. head
// holds at least its header and element table.
type treePage struct {
	d     *boltFile
	name  string // "page 57", "the inline page of bucket kv"
	id    uint64 // 0 for an inline page, which is all in head
	flags uint16
	count int
	span  uint64 // bytes, overflow pages included
	head  []byte
}

// page reads page id of bucket (the root bucket: ""), reached from what
// from names, at depth depth of the walk, and checks it; on a problem it
// records it and returns nil. The page is valid until the next page read
// at the same depth.
func (d *boltFile) page(id uint64, bucket, from string, depth int) *treePage {
	ps, hwm := d.meta.pageSize, d.meta.hwm
	name := fmt.Sprintf("page %d", id)
	if bucket != "" {
		name = fmt.Sprintf("bucket %q, page %d", bucket, id)
	}
	if id < 2 || id >= hwm {
		d.problem("%s points at page %d, outside the tree [2, %d)", from, id, hwm)
		return nil
	}
	if id >= d.pages {
		d.problem("%s points at page %d, past the end of the truncated file", from, id)
		return nil
	}
	head := d.pageBuf(depth)
	if err := d.readAt(head, int64(id*ps)); err != nil {
		d.problem("%s: read: %v", name, err)
		return nil
	}
	overflow := uint64(byteOrder.Uint32(head[12:]))
	switch got := byteOrder.Uint64(head); {
	case got != id:
		d.problem("%s (from %s) says it is page %d", name, from, got)
		return nil
	case overflow >= hwm-id:
		d.problem("%s: %d overflow pages run past the tree's end at page %d", name, overflow, hwm)
		return nil
	case overflow >= d.pages-id:
		d.problem("%s: %d overflow pages run past the end of the truncated file", name, overflow)
		return nil
	}
	for i := id; i <= id+overflow; i++ {
		if d.reached[i] {
			d.problem("%s (from %s): page %d is referred to twice", name, from, i)
			return nil
		}
	}
	p := &treePage{d: d, name: name, id: id, span: (overflow + 1) * ps, head: head}
	if !p.check(from) {
		return nil
	}
	for i := id; i <= id+overflow; i++ {
		d.reached[i] = true
	}
	return p
}

// inlinePage checks the inline page b of bucket name.
func (d *boltFile) inlinePage(name string, b []byte) *treePage {
	p := &treePage{d: d, name: fmt.Sprintf("the inline page of bucket %q", name), span: uint64(len(b)), head: b}
	if len(b) < pageHeaderSize {
		d.problem("bucket %q: inline page of %d bytes", name, len(b))
		return nil
	}
	if !p.check("bucket " + name) {
		return nil
	}
	if p.flags != flagLeaf {
		d.problem("%s is not a leaf page", p.name)
		return nil
	}
	return p
}

// check reads p's type and count from its header and checks that its
// element table, keys and values lie within it, reading the rest of the
// element table into head if it runs past the first page.
func (p *treePage) check(from string) bool {
	d := p.d
	p.flags, p.count = byteOrder.Uint16(p.head[8:]), int(byteOrder.Uint16(p.head[10:]))
	table := uint64(pageHeaderSize + p.count*elemSize)
	switch {
	case p.flags != flagBranch && p.flags != flagLeaf:
		d.problem("%s (from %s): type %#x is not a branch or leaf page", p.name, from, p.flags)
		return false
	case p.flags == flagBranch && p.count == 0:
		d.problem("%s: branch page with no elements", p.name)
		return false
	case table > p.span:
		d.problem("%s: %d elements do not fit in %d bytes", p.name, p.count, p.span)
		return false
	case table > uint64(len(p.head)):
		head := make([]byte, table)
		if err := d.readAt(head, int64(p.id*d.meta.pageSize)); err != nil {
			d.problem("%s: read: %v", p.name, err)
			return false
		}
		p.head = head
	}
	for i := range p.count {
		off, n := p.elemData(i)
		if off+n > p.span {
			d.problem("%s: element %d (%d bytes at %d) runs past the page's %d bytes", p.name, i, n, off, p.span)
			return false
		}
	}
	return true
}

// elem returns the 16 bytes of element i.
func (p *treePage) elem(i int) []byte {
	off := pageHeaderSize + i*elemSize
	return p.head[off : off+elemSize]
}

// elemData returns where element i's key and (in a leaf) value lie, as
// an offset in the page and a length.
func (p *treePage) elemData(i int) (off, n uint64) {
	e := p.elem(i)
	base := uint64(pageHeaderSize + i*elemSize)
	if p.flags == flagBranch {
		return base + uint64(byteOrder.Uint32(e)), uint64(byteOrder.Uint32(e[4:]))
	}
	return base + uint64(byteOrder.Uint32(e[4:])), uint64(byteOrder.Uint32(e[8:])) + uint64(byteOrder.Uint32(e[12:]))
}

// key returns element i's key.
func (p *treePage) key(i int) ([]byte, error) {
	off, n := p.elemData(i)
	if p.flags == flagLeaf {
		n = uint64(byteOrder.Uint32(p.elem(i)[8:]))
	}
	return p.bytes(off, n)
}

// value returns a copy of leaf element i's value.
func (p *treePage) value(i int) ([]byte, error) {
	off, n := p.elemData(i)
	ksize := uint64(byteOrder.Uint32(p.elem(i)[8:]))
	b, err := p.bytes(off+ksize, n-ksize)
	if err != nil || off+n > uint64(len(p.head)) {
		return b, err
	}
	return bytes.Clone(b), nil
}

// bytes returns n bytes of p at off (within its span), from head when it
// holds them. The result may share head's memory.
func (p *treePage) bytes(off, n uint64) ([]byte, error) {
	if off+n <= uint64(len(p.head)) {
		return p.head[off : off+n], nil
	}
	b := make([]byte, n)
	if _, err := p.d.r.ReadAt(b, int64(p.id*p.d.meta.pageSize+off)); err != nil {
		return nil, fmt.Errorf("%s: read: %w", p.name, err)
	}
	return b, nil
}

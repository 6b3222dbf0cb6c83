package queue

import (
	"bytes"
	"fmt"
	"io"
)

// visitFunc is called by a walk with each key of a bucket that is not a
// bucket itself, in key order. bucket names nested buckets "outer/inner".
// key is valid until visit returns; value says where the value is.
type visitFunc func(bucket string, key []byte, value valueRef)

// valueRef is where a value is: n bytes at off in the file, or in mem (a
// value in a bucket's inline page).
type valueRef struct {
	r   io.ReaderAt
	off int64
	n   int
	mem []byte
}

// read returns the value.
func (v valueRef) read() ([]byte, error) {
	if v.r == nil {
		return v.mem, nil
	}
	b := make([]byte, v.n)
	if _, err := v.r.ReadAt(b, v.off); err != nil {
		return nil, err
	}
	return b, nil
}

// walk walks the whole tree from the meta page's root bucket (and the
// freelist page, if the file has one), checking every page it reaches,
// and calls visit (if not nil) with every key that is not a bucket. A
// page it cannot read is a problem, and the keys below it a lost range;
// the walk goes on with the rest.
func (d *boltFile) walk(visit visitFunc) {
	if d.meta.root == 0 {
		d.lost = append(d.lost, lostRange{})
		return
	}
	d.walkTree(treeRef{id: d.meta.root, from: "the meta page"}, 0, visit)
	if d.meta.freelist != noFreelist {
		d.checkFreelist()
	}
}

// treeRef is a reference to the root of a (sub)tree: the page, what
// refers to it, the bucket it belongs to, and the range its keys must lie
// in: [min, hi) for bbolt (nil: unbounded), [lo, hi) if it is lost.
type treeRef struct {
	id          uint64
	from        string
	bucket      string
	min, lo, hi []byte
}

func (d *boltFile) walkTree(r treeRef, depth int, visit visitFunc) {
	if depth > maxDepth {
		d.problem("%s: the tree is more than %d levels deep", r.from, maxDepth)
		d.lose(r)
		return
	}
	p := d.page(r.id, r.bucket, r.from, depth)
	if p == nil {
		d.lose(r)
		return
	}
	d.walkPage(p, r, depth, visit)
}

// walkPage walks the elements of p, which r referred to: it checks the
// order of their keys, descends into the children of a branch page and
// the buckets of a leaf page, and visits the other keys of a leaf page.
func (d *boltFile) walkPage(p *treePage, r treeRef, depth int, visit visitFunc) {
	var prev []byte
	for i := range p.count {
		key, err := p.key(i)
		if err != nil {
			d.problem("%v", err)
			d.lose(r)
			return
		}
		d.checkOrder(p, i, key, prev, r)
		prev = key
		if p.flags == flagBranch {
			child := treeRef{id: byteOrder.Uint64(p.elem(i)[8:]), from: p.name, bucket: r.bucket, min: key, lo: key, hi: r.hi}
			if i == 0 {
				child.lo = r.lo
			}
			if i+1 < p.count {
				if child.hi, err = p.key(i + 1); err != nil {
					d.problem("%v", err)
				}
			}
			d.walkTree(child, depth+1, visit)
			continue
		}
		if byteOrder.Uint32(p.elem(i))&leafIsBucket != 0 {
			d.walkBucket(p, i, bucketName(r.bucket, key), depth, visit)
			continue
		}
		if visit != nil {
			visit(r.bucket, key, p.valueRef(i))
		}
	}
}

// valueRef returns where leaf element i's value is.
func (p *treePage) valueRef(i int) valueRef {
	off, n := p.elemData(i)
	ksize := uint64(byteOrder.Uint32(p.elem(i)[8:]))
	off, n = off+ksize, n-ksize
	if p.id == 0 {
		return valueRef{n: int(n), mem: p.head[off : off+n]}
	}
	return valueRef{r: p.d.r, off: int64(p.id*p.d.meta.pageSize + off), n: int(n)}
}

// lose notes that the keys of r are lost.
func (d *boltFile) lose(r treeRef) {
	d.lost = append(d.lost, lostRange{r.bucket, bytes.Clone(r.lo), bytes.Clone(r.hi)})
}

func bucketName(parent string, key []byte) string {
	if parent == "" {
		return string(key)
	}
	return parent + "/" + string(key)
}

// checkOrder checks that key, element i of p, comes after prev and lies
// within r's range, as bbolt's own check does.
func (d *boltFile) checkOrder(p *treePage, i int, key, prev []byte, r treeRef) {
	switch {
	case i == 0 && r.min != nil && bytes.Compare(key, r.min) < 0:
		d.problem("%s: key %d %q sorts before its parent's %q", p.name, i, key, r.min)
	case i > 0 && bytes.Compare(key, prev) <= 0:
		d.problem("%s: key %d %q does not sort after key %d %q", p.name, i, key, i-1, prev)
	case r.hi != nil && bytes.Compare(key, r.hi) >= 0:
		d.problem("%s: key %d %q does not sort before its parent's next key %q", p.name, i, key, r.hi)
	}
}

// walkBucket walks the bucket name whose header (and inline page) is the
// value of leaf element i of p.
func (d *boltFile) walkBucket(p *treePage, i int, name string, depth int, visit visitFunc) {
	v, err := p.value(i)
	switch {
	case err != nil:
		d.problem("bucket %q: %v", name, err)
	case len(v) < bucketHeaderSize:
		d.problem("%s: bucket %q: a value of %d bytes is too short for a bucket", p.name, name, len(v))
	case byteOrder.Uint64(v) != 0:
		from := fmt.Sprintf("%s (the entry of bucket %q)", p.name, name)
		d.walkTree(treeRef{id: byteOrder.Uint64(v), from: from, bucket: name}, depth+1, visit)
		return
	default:
		if in := d.inlinePage(name, bytes.Clone(v[bucketHeaderSize:])); in != nil {
			d.walkPage(in, treeRef{from: in.name, bucket: name}, depth+1, visit)
			return
		}
	}
	d.lost = append(d.lost, lostRange{bucket: name})
}

// checkFreelist checks the freelist page: bbolt reads every page ID it
// lists at Open.
func (d *boltFile) checkFreelist() {
	id, ps, hwm := d.meta.freelist, d.meta.pageSize, d.meta.hwm
	head := make([]byte, pageHeaderSize+8)
	if _, err := d.r.ReadAt(head, int64(id*ps)); err != nil {
		d.problem("freelist page %d: read: %v", id, err)
		return
	}
	count, overflow := uint64(byteOrder.Uint16(head[10:])), uint64(byteOrder.Uint32(head[12:]))
	skip := uint64(0)
	if count == 0xFFFF {
		count, skip = byteOrder.Uint64(head[pageHeaderSize:]), 1
	}
	switch {
	case byteOrder.Uint64(head) != id || byteOrder.Uint16(head[8:]) != flagFreelist:
		d.problem("freelist page %d is not a freelist page", id)
		return
	case id >= d.pages:
		d.problem("freelist page %d is past the end of the truncated file", id)
		return
	case overflow >= min(hwm, d.pages)-id || count > ((overflow+1)*ps-pageHeaderSize)/8-skip:
		d.problem("freelist page %d: %d page IDs run past the page", id, count)
		return
	}
	ids := make([]byte, count*8)
	if _, err := d.r.ReadAt(ids, int64(id*ps+pageHeaderSize+skip*8)); err != nil {
		d.problem("freelist page %d: read: %v", id, err)
		return
	}
	for i := range count {
		if free := byteOrder.Uint64(ids[i*8:]); free < 2 || free >= hwm {
			d.problem("freelist page %d lists page %d, outside the tree [2, %d)", id, free, hwm)
			return
		}
	}
	for i := id; i <= id+overflow; i++ {
		if d.reached[i] {
			d.problem("freelist page %d is also in the tree", i)
			return
		}
		d.reached[i] = true
	}
}

package queue

// When the walk of spool.db loses part of the tree (a damaged branch page,
// a truncated file, unreadable meta pages), the records and bodies below
// it are often still on disk, in leaf pages nothing leads to any more.
// scanLoose reads every page the walk did not reach and takes from the
// leaf pages among them the records and bodies whose keys lie where the
// tree was lost. Those pages also hold older copies of pages bbolt has
// since rewritten (with NoFreelistSync nothing records which pages are
// free), so a record found there may be a message already delivered and
// deleted: of several copies the one with the most progress is taken, and
// Salvage holds every such message for the operator to review.

import (
	"bytes"
	"slices"
)

// scanLoose takes records and bodies from the leaf pages outside the tree.
func (sc *spoolScan) scanLoose() {
	d := sc.d
	d.mute = true // these pages are not the tree: what is wrong with them is not damage
	defer func() { d.mute = false }()
	for id := uint64(2); id < d.pages; id++ {
		if d.reached[id] {
			continue
		}
		p := d.loosePage(id)
		if p == nil {
			continue
		}
		sc.takeLoose(p)
		id += p.span/d.meta.pageSize - 1
	}
}

// loosePage returns page id if it is a sound leaf page, else nil. The
// page is valid until the next call.
func (d *boltFile) loosePage(id uint64) *treePage {
	head := d.pageBuf(0) // the walk is over
	if err := d.readAt(head, int64(id*d.meta.pageSize)); err != nil {
		return nil
	}
	overflow := uint64(byteOrder.Uint32(head[12:]))
	if byteOrder.Uint64(head) != id || byteOrder.Uint16(head[8:]) != flagLeaf || overflow >= d.pages-id {
		return nil
	}
	p := &treePage{d: d, name: "loose page", id: id, span: (overflow + 1) * d.meta.pageSize, head: head}
	if !p.check("") {
		return nil
	}
	return p
}

// takeLoose takes from leaf page p the records and bodies the tree lost.
func (sc *spoolScan) takeLoose(p *treePage) {
	for i := range p.count {
		if byteOrder.Uint32(p.elem(i))&leafIsBucket != 0 {
			continue
		}
		key, err := p.key(i)
		if err != nil || !validID(string(key)) {
			return // not a page of messages or bodies
		}
		v := p.valueRef(i)
		if b, err := v.read(); err == nil && bytes.HasPrefix(b, []byte(`{`)) {
			if m, err := decodeMessage(b); err == nil && m.ID == string(key) {
				sc.takeRecord(m, b)
				continue
			}
		}
		id := string(key)
		if _, ok := sc.bodies[id]; !ok && sc.d.lostIn(string(bucketBodies), key) {
			sc.bodies[id] = v
		}
	}
}

// takeRecord takes m, stored as rec in a loose page, if the tree lost its
// key and has no record of it, and it is later than a copy already taken.
func (sc *spoolScan) takeRecord(m *Message, rec []byte) {
	if !sc.d.lostIn(string(bucketMessages), []byte(m.ID)) {
		return
	}
	if f, ok := sc.msgs[m.ID]; ok {
		if !f.loose {
			return
		}
		a, u := progress(m)
		fa, fu := progress(f.m)
		if a < fa || (a == fa && !u.After(fu)) {
			return
		}
	}
	sc.msgs[m.ID] = &found{m: m, rec: slices.Clone(rec), loose: true}
}

// lostIn reports whether key of bucket lies in a part of the tree the walk
// lost: a range of the bucket, or the bucket itself in a range of the root
// bucket.
func (d *boltFile) lostIn(bucket string, key []byte) bool {
	for _, r := range d.lost {
		if (r.bucket == bucket && r.contains(key)) || (r.bucket == "" && r.contains([]byte(bucket))) {
			return true
		}
	}
	return false
}

package queue

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"
)

// An ID is 16 characters of lower-case base32hex ("0-9a-v") encoding 80 bits:
// 48 bits of Unix milliseconds followed by a 32-bit sequence. The sequence
// starts at a random value below 2^24 in each new millisecond and counts up
// within it, so IDs from one Spool are strictly increasing, and their byte
// order is their creation order. They are URL- and file-name-safe.
const (
	idLen      = 16
	idAlphabet = "0123456789abcdefghijklmnopqrstuv"
)

// idGen hands out strictly increasing IDs. It is owned by one Spool.
type idGen struct {
	mu     sync.Mutex
	lastMS uint64
	seq    uint32
}

// seed makes the generator continue after last, an existing ID, so that IDs
// keep increasing across restarts even if the clock has stepped back.
func (g *idGen) seed(last string) {
	ms, seq, ok := parseID(last)
	if !ok {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if ms > g.lastMS || (ms == g.lastMS && seq > g.seq) {
		g.lastMS, g.seq = ms, seq
	}
}

func (g *idGen) next(now time.Time) string {
	ms := uint64(max(now.UnixMilli(), 0)) & (1<<48 - 1)
	g.mu.Lock()
	if ms > g.lastMS {
		g.lastMS, g.seq = ms, randomSeq()
	} else if g.seq++; g.seq == 0 { // 2^32 IDs in one millisecond: borrow the next one
		g.lastMS, g.seq = g.lastMS+1, randomSeq()
	}
	ms, seq := g.lastMS, g.seq
	g.mu.Unlock()
	return formatID(ms, seq)
}

func randomSeq() uint32 {
	var b [4]byte
	rand.Read(b[:]) // never returns an error (crypto/rand since Go 1.24)
	return binary.BigEndian.Uint32(b[:]) >> 8
}

func formatID(ms uint64, seq uint32) string {
	// 80 bits held as hi (top 16 bits) and lo (low 64 bits).
	hi := ms >> 32
	lo := ms<<32 | uint64(seq)
	var b [idLen]byte
	for i := idLen - 1; i >= 0; i-- {
		b[i] = idAlphabet[lo&31]
		lo = lo>>5 | (hi&31)<<59
		hi >>= 5
	}
	return string(b[:])
}

// IDTime is the time in id, to the millisecond: when this spool made it,
// for a message when it came into this spool (an imported copy gets an
// ID here, at its import). Zero when id is not a spool ID.
func IDTime(id string) time.Time {
	ms, _, ok := parseID(id)
	if !ok {
		return time.Time{}
	}
	return time.UnixMilli(int64(ms))
}

func parseID(id string) (ms uint64, seq uint32, ok bool) {
	if len(id) != idLen {
		return 0, 0, false
	}
	var hi, lo uint64
	for i := range idLen {
		c := id[i]
		var v uint64
		switch {
		case c >= '0' && c <= '9':
			v = uint64(c - '0')
		case c >= 'a' && c <= 'v':
			v = uint64(c-'a') + 10
		default:
			return 0, 0, false
		}
		hi = hi<<5 | lo>>59
		lo = lo<<5 | v
	}
	return hi<<32 | lo>>32, uint32(lo), true
}

// validID reports whether id has the form of a queue ID. It is checked before
// an ID names a file.
func validID(id string) bool {
	_, _, ok := parseID(id)
	return ok
}

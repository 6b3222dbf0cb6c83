package cluster

import (
	"bytes"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/queue"
)

// FuzzDecodeEntry checks that any message a bucket may hold (written by
// this code, by another client, or damaged) reads without a panic, and
// that what queue.EncodeKV wrote reads back as it was.
func FuzzDecodeEntry(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	f.Add(uint64(7), []byte(nil), queue.EncodeKV(0, "42"), int64(0))
	f.Add(uint64(8), []byte("NATS/1.0\r\nKV-Operation: PURGE\r\n\r\n"), []byte(nil), int64(0))
	f.Add(uint64(9), []byte("NATS/1.0\r\nNats-Marker-Reason: MaxAge\r\n\r\n"), []byte(nil), int64(0))
	f.Add(uint64(1), []byte("NATS/1.0\r\n"), []byte("short"), int64(0))
	f.Add(uint64(2), []byte(nil), queue.EncodeKV(uint64(now.UnixNano()), "v"), int64(-1))
	f.Fuzz(func(t *testing.T, rev uint64, hdr, data []byte, exp int64) {
		e := decodeEntry(rev, hdr, data, now)
		if e.rev != rev {
			t.Errorf("rev %d; want %d", e.rev, rev)
		}
		if e.live && len(data) < 8 {
			t.Errorf("live from %d bytes", len(data))
		}
		if len(hdr) != 0 || exp < 0 {
			return
		}
		value := data
		e = decodeEntry(rev, nil, queue.EncodeKV(uint64(exp), string(value)), now)
		wantLive := exp == 0 || exp > now.UnixNano()
		if e.live != wantLive || (wantLive && (!bytes.Equal(e.value, value) || e.exp != uint64(exp))) {
			t.Errorf("encode(%d, %q) reads back as %+v; want live %v", exp, value, e, wantLive)
		}
	})
}

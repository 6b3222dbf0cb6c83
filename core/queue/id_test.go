package queue

import (
	"slices"
	"testing"
	"time"
)

func TestIDFormat(t *testing.T) {
	tests := []struct {
		name string
		ms   uint64
		seq  uint32
		want string
	}{
		{name: "zero", ms: 0, seq: 0, want: "0000000000000000"},
		{name: "one", ms: 0, seq: 1, want: "0000000000000001"},
		{name: "max", ms: 1<<48 - 1, seq: 1<<32 - 1, want: "vvvvvvvvvvvvvvvv"},
		{name: "ms only", ms: 1, seq: 0, want: "0000000004000000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := formatID(tc.ms, tc.seq)
			if got != tc.want {
				t.Errorf("formatID(%d, %d): got %q, want %q", tc.ms, tc.seq, got, tc.want)
			}
			ms, seq, ok := parseID(got)
			if !ok || ms != tc.ms || seq != tc.seq {
				t.Errorf("parseID(%q): got (%d, %d, %v), want (%d, %d, true)", got, ms, seq, ok, tc.ms, tc.seq)
			}
		})
	}
	for _, bad := range []string{"", "000000000000000", "00000000000000000", "000000000000000w", "000000000000000V", "../../etc/passw"} {
		if validID(bad) {
			t.Errorf("validID(%q): got true, want false", bad)
		}
	}
}

func TestIDsUniqueAndSorted(t *testing.T) {
	const n = 10000
	clocks := []struct {
		name string
		now  func(i int) time.Time
	}{
		{name: "real clock", now: func(int) time.Time { return time.Now() }},
		{name: "frozen clock", now: func(int) time.Time { return testNow() }},
		{name: "clock stepping back", now: func(i int) time.Time { return testNow().Add(-time.Duration(i) * time.Millisecond) }},
	}
	for _, c := range clocks {
		t.Run(c.name, func(t *testing.T) {
			var g idGen
			ids := make([]string, n)
			for i := range ids {
				ids[i] = g.next(c.now(i))
				if !validID(ids[i]) {
					t.Fatalf("ID %q is not valid", ids[i])
				}
			}
			if !slices.IsSorted(ids) {
				t.Errorf("IDs are not in creation order")
			}
			if got := len(slices.Compact(slices.Clone(ids))); got != n {
				t.Errorf("distinct IDs: got %d, want %d", got, n)
			}
		})
	}
}

func TestIDTime(t *testing.T) {
	var g idGen
	id := g.next(testNow())
	ms, _, _ := parseID(id)
	if got, want := int64(ms), testNow().UnixMilli(); got != want {
		t.Errorf("ID %s carries %d ms, want %d", id, got, want)
	}
}

// TestIDsAcrossReopen: a spool reopened under a clock that went back keeps
// handing out larger IDs.
func TestIDsAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	first := commit(t, s, testEnvelope("bob@example.com"), nil, []byte("x\r\n"), 10)
	s.Close()
	s = openSpool(t, dir, Options{Now: func() time.Time { return testNow().Add(-time.Hour) }})
	d, err := s.Create(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Abort()
	if d.ID() <= first {
		t.Errorf("ID after reopen %s, want > %s", d.ID(), first)
	}
}

// IDTime reads back the millisecond an ID was made at, and is zero for
// what is not an ID.
func TestIDTimeReadsTheMillisecond(t *testing.T) {
	var g idGen
	now := time.Date(2026, 12, 7, 8, 30, 0, 123_456_789, time.UTC)
	id := g.next(now)
	if got, want := IDTime(id), now.Truncate(time.Millisecond); !got.Equal(want) {
		t.Errorf("IDTime(%q) = %v, want %v", id, got, want)
	}
	for _, bad := range []string{"", "short", "0123456789abcdeW", "0123456789abcdef0"} {
		if got := IDTime(bad); !got.IsZero() {
			t.Errorf("IDTime(%q) = %v, want zero", bad, got)
		}
	}
}

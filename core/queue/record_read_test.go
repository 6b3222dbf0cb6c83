package queue

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// unmarshalRecord is the decoding readRecord stands in for: the reference.
func unmarshalRecord(b []byte) (*record, error) {
	var r record
	err := json.Unmarshal(b, &r)
	return &r, err
}

// TestReadRecordReadsAppendRecord: whatever appendRecord writes, readRecord
// reads (json.Unmarshal is left for records written otherwise), and gives
// what json.Unmarshal gives.
func TestReadRecordReadsAppendRecord(t *testing.T) {
	at := time.Date(2026, 12, 6, 23, 59, 1, 123456789, time.FixedZone("", -5*3600))
	for _, text := range []string{
		"", "plain", `"quoted" \ back`, "<tag> & \u2028\u2029", "line\r\n\ttab\x00\x1f\x7f\b\f",
		"déjà vu 日本 🎉", "bad \xff utf-8", "a/b",
	} {
		for _, n := range []int64{0, 1, 6, 255, -7, 1 << 40} {
			r := fullRecord(text, n, at)
			if n == 0 {
				r = &record{V: 1, ID: text, Body: bodyInline}
			}
			checkReadRecord(t, r)
		}
	}
	checkReadRecord(t, &record{V: 1, Envelope: envRecord{Recipients: []rcptRecord{}}, Recipients: []rcptState{}})
}

func checkReadRecord(t *testing.T, r *record) {
	t.Helper()
	b, err := appendRecord(nil, r)
	if err != nil {
		t.Fatal(err)
	}
	var got record
	if !readRecord(b, &got) {
		t.Fatalf("readRecord refuses what appendRecord wrote:\n%s", b)
	}
	want, err := unmarshalRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, &got, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("readRecord differs from json.Unmarshal (-json +read):\n%s\n%s", diff, b)
	}
}

// TestReadRecordRefuses: input other than appendRecord's is left to
// json.Unmarshal, however close.
func TestReadRecordRefuses(t *testing.T) {
	good, err := appendRecord(nil, fullRecord("x", 3, time.Unix(1e9, 0).UTC()))
	if err != nil {
		t.Fatal(err)
	}
	var r record
	if !readRecord(good, &r) {
		t.Fatalf("refuses its own record %s", good)
	}
	for _, b := range []string{
		``, `{}`, `null`, string(good) + " ", " " + string(good), string(good[:len(good)-1]),
		`{"v":1,"id":"a","envelope":{"sender":{"local":"","domain":""},"recipients":[]},"recipients":[],"created":"0001-01-01T00:00:00Z","size":0,"body":"inline","x":1}`,
		`{"id":"a","v":1,"envelope":{"sender":{"local":"","domain":""},"recipients":[]},"recipients":[],"created":"0001-01-01T00:00:00Z","size":0,"body":"inline"}`,
		`{"v":1,"id":"a","envelope":{"sender":{"local":"","domain":""},"recipients":null},"recipients":[],"created":"0001-01-01T00:00:00Z","size":0,"body":"inline"}`,
		`{"v":01,"id":"a","envelope":{"sender":{"local":"","domain":""},"recipients":[]},"recipients":[],"created":"0001-01-01T00:00:00Z","size":0,"body":"inline"}`,
		`{"v":1,"id":"\ud83c\udf89","envelope":{"sender":{"local":"","domain":""},"recipients":[]},"recipients":[],"created":"0001-01-01T00:00:00Z","size":0,"body":"inline"}`,
		`{"v":1,"id":"a","envelope":{"sender":{"local":"","domain":""},"recipients":[{"address":{"local":"","domain":""},"notify":256}]},"recipients":[],"created":"0001-01-01T00:00:00Z","size":0,"body":"inline"}`,
		`{"v":1,"id":"a","envelope":{"sender":{"local":"","domain":""},"recipients":[]},"recipients":[{"status":"lost"}],"created":"0001-01-01T00:00:00Z","size":0,"body":"inline"}`,
	} {
		if readRecord([]byte(b), &record{}) {
			t.Errorf("readRecord takes %s", b)
		}
	}
}

// FuzzReadRecord: when readRecord takes bytes, json.Unmarshal takes them
// too and gives the same record; and readRecord takes every record
// appendRecord writes.
func FuzzReadRecord(f *testing.F) {
	for _, text := range []string{"plain", "<\"\\\x00\xff\u2028é>"} {
		b, err := appendRecord(nil, fullRecord(text, 5, time.Unix(1e9, 5).In(time.FixedZone("", 3600))))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, text, int64(5))
	}
	f.Fuzz(func(t *testing.T, b []byte, text string, n int64) {
		var got record
		if readRecord(b, &got) {
			want, err := unmarshalRecord(b)
			if err != nil {
				t.Fatalf("readRecord takes what json.Unmarshal refuses (%v): %s", err, b)
			}
			if diff := cmp.Diff(want, &got, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("readRecord differs from json.Unmarshal (-json +read):\n%s\n%s", diff, b)
			}
		}
		r := fullRecord(text, n, time.Unix(0, n).In(time.FixedZone("", int(n%50000))))
		if _, err := appendRecord(nil, r); err == nil {
			checkReadRecord(t, r)
		}
	})
}

// BenchmarkDecodeRecord compares readRecord with json.Unmarshal on a
// record as an attempt reads it.
func BenchmarkDecodeRecord(b *testing.B) {
	rec, err := appendRecord(nil, fullRecord("user@example.com", 1, time.Now()))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("read", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r record
			readRecord(rec, &r)
		}
	})
	b.Run("json.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			unmarshalRecord(rec)
		}
	})
}

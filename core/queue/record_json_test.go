package queue

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// marshalRecord is the encoding appendRecord replaces: the reference it
// must match byte for byte.
func marshalRecord(r *record) ([]byte, error) { return json.Marshal(r) }

// fullRecord is a record with every field set, in the text given.
func fullRecord(text string, n int64, at time.Time) *record {
	return &record{
		V: 1, ID: text,
		Envelope: envRecord{
			Sender: addrRecord{Local: text, Domain: text},
			Recipients: []rcptRecord{
				{Address: addrRecord{Local: text, Domain: "example.com"}, Notify: uint8(n), ORCPT: text},
				{Address: addrRecord{Local: "b", Domain: text}},
			},
			Size: n, Body: text, SMTPUTF8: n%2 == 0, Ret: text, EnvID: text, Auth: text,
			ClientIP: text, ClientHELO: text, AuthUser: text, TLS: n%3 == 0, Received: at,
			Submitted: n%5 == 0, RequireTLS: n%7 == 0, TLSOptional: n%11 == 0,
		},
		Recipients: []rcptState{
			{Status: Deferred, LastReply: text, TLSPolicy: text, Attempts: int(n), Updated: at},
			{Status: Status(n & 3)},
		},
		Created: at, Size: n, Attempts: int(n), NextAttempt: at, Held: n%13 == 0, DelayWarned: n%17 == 0, Hops: int(n % 100),
		Body: bodyFile,
	}
}

func TestAppendRecordMatchesMarshal(t *testing.T) {
	at := time.Date(2026, 12, 6, 21, 40, 0, 123456789, time.FixedZone("x", 3600))
	for _, tc := range []struct {
		text string
		n    int64
		at   time.Time
	}{
		{"plain", 1, at},
		{"", 0, time.Time{}},                     // every omitzero field left out
		{"quote\" back\\slash", -7, at.UTC()},    // escapes
		{"<b>&amp;</b>", 42, at},                 // HTML escaping, as json.Marshal does
		{"ctl\x00\x01\b\f\n\r\t\x1f\x7f", 3, at}, // control characters
		{"bad\xff\xfeutf8 \u2028\u2029 é 🎉", 12, at},
		{"y", 5, time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
	} {
		r := fullRecord(tc.text, tc.n, tc.at)
		want, werr := marshalRecord(r)
		got, gerr := appendRecord(nil, r)
		if (werr != nil) != (gerr != nil) || !bytes.Equal(got, want) {
			t.Errorf("%q:\nappendRecord = %s, %v\njson.Marshal = %s, %v", tc.text, got, gerr, want, werr)
		}
	}
	// What json.Marshal refuses, appendRecord refuses.
	for _, r := range []*record{
		fullRecord("x", 1, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)),
		fullRecord("x", 1, time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)),
		{V: 1, Recipients: []rcptState{{Status: 9}}, Envelope: envRecord{Recipients: []rcptRecord{}}},
	} {
		if _, err := marshalRecord(r); err == nil {
			t.Fatalf("json.Marshal took %+v", r)
		}
		if _, err := appendRecord(nil, r); err == nil {
			t.Errorf("appendRecord took what json.Marshal refuses: %+v", r)
		}
	}
}

// FuzzAppendRecord holds appendRecord to json.Marshal for any text, number
// and time in every field.
func FuzzAppendRecord(f *testing.F) {
	f.Add("plain", int64(1), int64(0))
	f.Add("<\"\\\x00\xff\u2028é>", int64(-3), int64(1e18))
	f.Fuzz(func(t *testing.T, text string, n int64, nanos int64) {
		// Zones up to ±27.7 hours: past json.Marshal's limit of 24.
		r := fullRecord(text, n, time.Unix(0, nanos).In(time.FixedZone("f", int(n%100000))))
		want, werr := marshalRecord(r)
		got, gerr := appendRecord(nil, r)
		if (werr != nil) != (gerr != nil) || !bytes.Equal(got, want) {
			t.Errorf("appendRecord = %s, %v\njson.Marshal = %s, %v", got, gerr, want, werr)
		}
	})
}

// BenchmarkEncodeRecord compares appendRecord with json.Marshal on a
// record as Commit writes it.
func BenchmarkEncodeRecord(b *testing.B) {
	r := fullRecord("user@example.com", 1, time.Now())
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			appendRecord(make([]byte, 0, 512), r)
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			marshalRecord(r)
		}
	})
}

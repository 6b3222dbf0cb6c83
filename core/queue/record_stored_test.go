package queue

import (
	"bytes"
	"testing"
	"time"
)

// TestAppendRecordZoneHour: a time whose zone offset is 24 hours or
// more. json.Marshal refuses it (time.Time.MarshalJSON: "timezone hour
// outside of range [0,23]"), appendRecord writes it, and what it writes
// is a record decodeMessage refuses: FuzzAppendRecord's zones stay under
// 50,000 s and never reach the case.
func TestAppendRecordZoneHour(t *testing.T) {
	at := time.Date(2026, 12, 6, 22, 0, 0, 0, time.FixedZone("far", 24*3600+60))
	r := fullRecord("x", 1, at)
	want, werr := marshalRecord(r)
	got, gerr := appendRecord(nil, r)
	if (werr != nil) != (gerr != nil) || !bytes.Equal(got, want) {
		t.Errorf("appendRecord = %s, %v\njson.Marshal = %s, %v", got, gerr, want, werr)
	}
	if gerr == nil {
		if _, err := decodeMessage(got); err != nil {
			t.Errorf("decodeMessage of what appendRecord wrote: %v", err)
		}
	}
}

// TestCommitFarZoneIsReadable: end to end, a clock in such a zone
// (Options.Now) makes Commit answer nil (the client is told 250) for a
// record that Get, List and the engine cannot read back: before
// appendRecord, Commit failed and the client was told to retry.
func TestCommitFarZoneIsReadable(t *testing.T) {
	far := func() time.Time { return testNow().In(time.FixedZone("far", 25*3600)) }
	s := openSpool(t, t.TempDir(), Options{Now: far})
	d, err := s.Create(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	d.Write([]byte("body\r\n"))
	if err := d.Commit(t.Context(), testEnvelope("bob@example.com"), nil); err != nil {
		return // refused: the client retries, nothing lost
	}
	if _, err := s.Get(d.ID()); err != nil {
		t.Errorf("Commit returned nil, but Get: %v", err)
	}
}

// TestCommittedMatchesGetInvalidUTF8: Committed promises "what Get
// and Body would read back", and the engine delivers a fresh message from
// it while a retry reads the record. For text that is not valid UTF-8
// (a HELO argument, an ORCPT, a local part as received) the record holds
// U+FFFD where Committed keeps the raw bytes: the first attempt and its
// hooks see one envelope, a retry another.
func TestCommittedMatchesGetInvalidUTF8(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{})
	d, err := s.Create(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	d.Write([]byte("body\r\n"))
	env := testEnvelope("bob@example.com")
	env.ClientHELO = "h\xffelo"
	env.Recipients[0].ORCPT = "rfc822;b\xfe@example.com"
	if err := d.Commit(t.Context(), env, nil); err != nil {
		t.Fatal(err)
	}
	checkCommittedIsStored(t, s, d)
}

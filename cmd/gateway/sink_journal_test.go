package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// TestSinkJournal: with --journal the sink answers 250 with each message
// (its Received header and content) already in the file.
func TestSinkJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	addr, stop := startSink(t, "--journal", path)
	file := filepath.Join(t.TempDir(), "msg.eml")
	for i := range 2 {
		body := fmt.Sprintf("Subject: journal %d\n\nline %d\n", i, i)
		if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := runWithInput(t, "", "send", "--server", addr, "--from", "a@x.test", "--to", "b@y.test", file)
		if code != 0 || !strings.HasPrefix(out, "250 ") {
			t.Fatalf("send %d: code %d, stdout %q, stderr %q", i, code, out, errOut)
		}
		got, err := os.ReadFile(path) // before the sink stops: the 250 came after the write (that it was synced, only strace can show)
		if err != nil {
			t.Fatal(err)
		}
		want := strings.ReplaceAll(body, "\n", "\r\n")
		if n := strings.Count(string(got), "Received: "); n != i+1 || !strings.HasSuffix(string(got), want) {
			t.Fatalf("journal after message %d:\n%q\nwant %d Received fields and the message last", i, got, i+1)
		}
	}
	if got := sinkTotals(t, stop()); !regexp.MustCompile(`^messages=2 bytes=\d+$`).MatchString(got) {
		t.Errorf("sink totals %q", got)
	}
}

// TestSinkJournalGroupCommit: records appended at once by many sessions
// are each in the file once and whole, whichever of them led the sync.
func TestSinkJournalGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	j, err := openSinkJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Go(func() {
			for k := range 25 {
				if err := j.append([]byte(fmt.Sprintf("<%02d-", w)), []byte(fmt.Sprintf("%02d>", k))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	records := regexp.MustCompile(`<(\d\d)-(\d\d)>`).FindAllString(string(got), -1)
	if len(records)*7 != len(got) || len(records) != 500 {
		t.Fatalf("journal has %d whole records in %d bytes, want 500 in 3500", len(records), len(got))
	}
	seen := map[string]bool{}
	for _, r := range records {
		if seen[r] {
			t.Errorf("record %s written twice", r)
		}
		seen[r] = true
	}
	if j.done != j.next-1 || j.done > 500 {
		t.Errorf("batches: done %d, next %d", j.done, j.next)
	}
}

// TestSinkJournalFailure: a write that fails fails its commit and every
// later one, instead of answering 250 for mail not on disk.
func TestSinkJournalFailure(t *testing.T) {
	j, err := openSinkJournal(filepath.Join(t.TempDir(), "journal"))
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	for i := range 2 {
		if err := j.append([]byte("x")); err == nil || !strings.Contains(err.Error(), "sink: journal: ") {
			t.Errorf("append %d on a closed file: %v, want an error", i, err)
		}
	}
}

// TestSinkJournalWithSave: the two ways of keeping mail exclude each other.
func TestSinkJournalWithSave(t *testing.T) {
	code, _, errOut := runWithInput(t, "", "sink", "--save", t.TempDir(), "--journal", filepath.Join(t.TempDir(), "j"))
	if code == 0 || !strings.Contains(errOut, "--save and --journal: choose one") {
		t.Errorf("code %d, stderr %q", code, errOut)
	}
}

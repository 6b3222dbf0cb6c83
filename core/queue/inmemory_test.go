package queue

import (
	"testing"
)

// TestDraftsShareMemoryBound checks that open drafts together keep at most
// maxInMemory of content in memory: past it each further draft spills to
// its file, though its own content is under the spill threshold; and that
// committing or aborting gives the memory back.
func TestDraftsShareMemoryBound(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{})
	chunk := content("mem", 100<<10) // under the 256 KiB threshold
	fit := maxInMemory / len(chunk)
	var drafts []*Draft
	for range fit + 10 {
		d, err := s.Create(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Write(chunk); err != nil {
			t.Fatal(err)
		}
		drafts = append(drafts, d)
	}
	if got := s.inMemory.Load(); got > maxInMemory {
		t.Errorf("drafts hold %d bytes in memory, want at most %d", got, maxInMemory)
	}
	if got := s.Stats().Spilled; got != 10 {
		t.Errorf("%d drafts spilled, want 10 (those past %d in memory)", got, fit)
	}
	for i, d := range drafts {
		if i%2 == 0 {
			if err := d.Commit(t.Context(), testEnvelope("bob@example.com"), nil); err != nil {
				t.Fatal(err)
			}
			if got := readBody(t, s, d.ID()); string(got) != string(chunk) {
				t.Fatalf("draft %d: body of %d bytes, want the %d written", i, len(got), len(chunk))
			}
		} else if err := d.Abort(); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.inMemory.Load(); got != 0 {
		t.Errorf("%d bytes still counted in memory after every draft ended", got)
	}
}

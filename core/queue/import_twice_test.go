package queue

import (
	"bytes"
	"slices"
	"testing"
)

// A copy imported twice (a takeover stopped between an import and the
// removal of its copy, then taken up again) is two messages, each with
// its own ID and body: the duplicate takeover.go accepts, never one
// message's body under the other's. A copy whose ID is an ID this spool
// already uses (IDs are each node's own) leaves that message as it was.
// It passes on main: it pins Import's ID and body handling, in spool.db
// and spilled to files.
func TestImportTwiceAndOverALocalID(t *testing.T) {
	for _, size := range []int{100, 5000} {
		from := openSpool(t, t.TempDir(), Options{SpillThreshold: 1000})
		id := commit(t, from, testEnvelope("bob@example.com", "carol@example.net"), nil, content("copy", size), 333)
		src, _ := from.Get(id)
		body := readBody(t, from, id)

		to := openSpool(t, t.TempDir(), Options{SpillThreshold: 1000})
		local := commit(t, to, testEnvelope("dan@example.org"), nil, content("local", size), 333)
		localBody := readBody(t, to, local)
		clash := *src
		clash.ID = local
		rec, err := encodeMessage(&clash)
		if err != nil {
			t.Fatal(err)
		}
		first := importAsIs(t, to, &clash, rec, body)
		second := importAsIs(t, to, &clash, rec, body)
		if first == second || first == local || second == local {
			t.Fatalf("size %d: IDs local %s, first import %s, second %s; want three", size, local, first, second)
		}
		if m, err := to.Get(local); err != nil || m.Envelope.Recipients[0].Address.String() != "dan@example.org" {
			t.Errorf("size %d: the local message after the imports: %v, %v", size, m, err)
		}
		if b := readBody(t, to, local); !bytes.Equal(b, localBody) {
			t.Errorf("size %d: the local message's body changed", size)
		}
		if err := to.Delete(t.Context(), first); err != nil {
			t.Fatal(err)
		}
		if b := readBody(t, to, second); !bytes.Equal(b, body) {
			t.Errorf("size %d: the second import's body after the first's deletion: %d bytes, want %d", size, len(b), len(body))
		}
		if due := dueIDs(t, to, testNow()); !slices.Contains(due, second) || slices.Contains(due, first) {
			t.Errorf("size %d: due %v; want %s and not %s (deleted)", size, due, second, first)
		}
	}
}

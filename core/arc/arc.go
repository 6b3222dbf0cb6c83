// Package arc owns the Authenticated Received Chain (RFC 8617): it
// verifies the ARC sets a message arrives with (Verify) and adds ours when
// the gateway forwards it (Sealer.Seal). It holds its own RFC 6376
// canonicalization (relaxed and simple) and tag-list parser, and fetches
// keys only through the LookupTXT function it is given, so DNS, its cache
// and its errors stay the caller's (core/resolver).
package arc

import (
	"context"
	"strconv"
	"strings"
)

// LookupTXT returns the TXT records of a name, one string per record with
// its character-strings joined; (*resolver.Resolver).TXT is one. An error
// for which resolver.IsTemporary is false (NXDOMAIN) is a permanent
// failure of the key; any other is temporary.
type LookupTXT func(ctx context.Context, name string) ([]string, error)

// Status is the chain validation status, the value of arc= in
// Authentication-Results and of cv= in the next ARC-Seal.
type Status string

const (
	None      Status = "none"      // no ARC sets
	Pass      Status = "pass"      // a valid chain
	Fail      Status = "fail"      // a broken chain
	TempError Status = "temperror" // a key could not be fetched for now; retry later
)

// MaxSets is the most ARC sets a chain may have (RFC 8617 §4.2.1).
const MaxSets = 50

// Result is what Verify found.
type Result struct {
	Status Status
	// Reason says why the status is not pass, for logs and the
	// Authentication-Results comment; empty on pass.
	Reason string
	// Sets are the chain's sets, oldest (i=1) first, when its structure is
	// valid; the gateway can show what each hop saw in AuthResults.
	Sets []Set
	// OldestPass, on pass, is 0 when every ARC-Message-Signature still
	// verifies, otherwise the lowest instance from which on all do
	// (RFC 8617 §5.2 step 5): the hops below it changed the message.
	OldestPass int
}

// Set is one ARC set as found in the message.
type Set struct {
	Instance int
	// AuthResults is the ARC-Authentication-Results payload after "i=N;",
	// unfolded: "authserv-id; spf=pass …; dkim=pass …".
	AuthResults string
	Domain      string // d= of the ARC-Seal: who sealed
	Selector    string // s= of the ARC-Seal
	CV          string // cv= of the ARC-Seal
}

// ResInfo is the arc method result for an Authentication-Results header
// (RFC 8601, RFC 8617 §10.1), e.g. "arc=pass (i=2 d=lists.example)" or
// "arc=fail (ARC-Seal i=1 does not verify)".
func (r Result) ResInfo() string {
	s := "arc=" + string(r.Status)
	switch {
	case r.Status == Pass && len(r.Sets) > 0:
		last := r.Sets[len(r.Sets)-1]
		s += " (i=" + strconv.Itoa(last.Instance) + " d=" + commentSafe(last.Domain) + ")"
		if r.OldestPass > 0 {
			s += " header.oldest-pass=" + strconv.Itoa(r.OldestPass)
		}
	case r.Reason != "":
		s += " (" + commentSafe(r.Reason) + ")"
	}
	return s
}

// commentSafe keeps text fit for an RFC 5322 comment on one line.
func commentSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '(' || r == ')' || r == '\\':
			return -1
		case r < 0x20 || r == 0x7f:
			return ' '
		}
		return r
	}, s)
}

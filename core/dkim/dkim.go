// Package dkim owns outbound DKIM signing (RFC 6376, RFC 8463): the keys
// of the configuration's dkim blocks, parsed once and looked up by signing
// domain (Keys), and the signature of one message (Keys.Sign): the
// DKIM-Signature field, relaxed/relaxed, rsa-sha256 or ed25519-sha256 by
// the key's type, over the configured header fields with From over-signed.
// The cryptography and canonicalization are github.com/emersion/go-msgauth's.
//
// Which messages are signed is the delivery engine's decision; this
// package signs what it is given, for the most specific domain of the
// message's From: that has a key.
package dkim

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Domain is one dkim "domain" { … } block: the signing domain (d=), the
// selector (s=), the key and the header fields to sign.
type Domain struct {
	Name     string // the signing domain, lower case, A-labels
	Selector string
	Key      *Key
	// Headers are the fields to sign when present, in this order; nil =
	// DefaultHeaders. From is always signed, and listed once more than
	// the message has it (over-signed), so that no From can be added.
	Headers []string
}

// DefaultHeaders are the fields signed when a dkim block names none: RFC
// 6376 §5.4.1's list, the MIME and thread fields and the mailing-list
// fields (RFC 2369, RFC 2919, RFC 8058).
func DefaultHeaders() []string {
	return []string{
		"From", "Sender", "Reply-To", "Subject", "Date", "Message-ID", "To", "Cc",
		"MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-ID", "Content-Description",
		"Resent-Date", "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc", "Resent-Message-ID",
		"In-Reply-To", "References",
		"List-Id", "List-Help", "List-Unsubscribe", "List-Unsubscribe-Post", "List-Subscribe", "List-Post", "List-Owner", "List-Archive",
	}
}

// ErrDuplicateDomain is returned by NewKeys for two blocks of one domain.
var ErrDuplicateDomain = errors.New("dkim: two keys for one domain")

// Keys is the signing keys of a configuration, by domain. A nil or empty
// Keys signs nothing. It is read-only once built: a reload builds another
// and swaps it in.
type Keys struct {
	byName map[string]*Domain
}

// NewKeys builds the set of domains: each needs a name, a selector and a
// key, and a domain may appear only once (ErrDuplicateDomain). Names are
// compared in lower case.
func NewKeys(domains []Domain) (*Keys, error) {
	ks := &Keys{byName: make(map[string]*Domain, len(domains))}
	for i := range domains {
		d := domains[i]
		d.Name = strings.ToLower(strings.TrimSuffix(d.Name, "."))
		switch {
		case d.Name == "" || d.Selector == "" || d.Key == nil:
			return nil, fmt.Errorf("dkim: domain %q needs a name, a selector and a key", d.Name)
		case ks.byName[d.Name] != nil:
			return nil, fmt.Errorf("%w: %q", ErrDuplicateDomain, d.Name)
		}
		if d.Headers == nil {
			d.Headers = DefaultHeaders()
		}
		if !slices.ContainsFunc(d.Headers, func(h string) bool { return strings.EqualFold(h, "From") }) {
			d.Headers = append([]string{"From"}, d.Headers...)
		}
		ks.byName[d.Name] = &d
	}
	return ks, nil
}

// Len is the number of domains.
func (ks *Keys) Len() int {
	if ks == nil {
		return 0
	}
	return len(ks.byName)
}

// Names are the domains, sorted.
func (ks *Keys) Names() []string {
	if ks == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(ks.byName))
}

// Lookup is the block of exactly domain (any case, a trailing dot
// allowed): what authentication's arc_seal names. The Domain is shared:
// do not change it.
func (ks *Keys) Lookup(domain string) (*Domain, bool) {
	if ks == nil {
		return nil, false
	}
	d := ks.byName[strings.ToLower(strings.TrimSuffix(domain, "."))]
	return d, d != nil
}

// Match is the block that signs for a From: domain: the domain itself or
// its nearest parent that has a block ("mail.example.test" is signed by
// "example.test" when it has no block of its own).
func (ks *Keys) Match(domain string) (*Domain, bool) {
	name := strings.ToLower(strings.TrimSuffix(domain, "."))
	for name != "" {
		if d, ok := ks.Lookup(name); ok {
			return d, true
		}
		_, parent, ok := strings.Cut(name, ".")
		if !ok {
			break
		}
		name = parent
	}
	return nil, false
}

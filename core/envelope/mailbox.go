package envelope

import "strings"

// Mailbox returns the form under which two addresses are the same
// recipient of a message: the whole address lower-cased, the domain
// without a trailing dot. A transaction holds each mailbox once.
//
// RFC 5321 §2.4 lets a server treat local parts as case-sensitive, but
// discourages relying on it, and no mailbox this gateway delivers to
// tells case apart (the Maildir transport folds it). Postfix's duplicate
// filter folds the whole address too (cleanup's been_here with
// BH_FLAG_FOLD): <Alice@Example.test> and <alice@example.test> given in
// one transaction reach alice once. The cost, one copy instead of two for
// a remote system that keeps two mailboxes differing only by case, is the
// one Postfix accepts.
func (a Address) Mailbox() string {
	return strings.ToLower(a.Local) + "@" + a.DomainFold()
}

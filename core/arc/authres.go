package arc

import "strings"

// FromAuthResults reads the topmost Authentication-Results field of msg,
// the one the gateway added on receipt, if its authserv-id is authservID,
// and returns its payload unfolded, "authserv-id; spf=…; arc=pass", and
// the arc= result in it. That is what Seal needs when the message comes
// out of the queue, rewritten since it was verified. Only the topmost
// field counts: one further down with our id came from outside (the
// checks remove those, but a change of authserv-id or a client the
// checks skip must not make our key vouch for it). ok is false when the
// topmost field is not ours, or there is none; cv is "" when the field
// has no arc= result.
func FromAuthResults(msg []byte, authservID string) (payload string, cv Status, ok bool) {
	fields, _ := splitMessage(msg)
	for _, f := range fields {
		if !strings.EqualFold(f.name, "Authentication-Results") {
			continue
		}
		p := strings.TrimPrefix(strings.TrimSuffix(relaxedHeader("", f.value), "\r\n"), ":")
		head, rest, _ := strings.Cut(p, ";")
		if id := strings.Fields(head); len(id) == 0 || !strings.EqualFold(id[0], authservID) {
			return "", "", false
		}
		return p, arcResult(rest), true
	}
	return "", "", false
}

// arcResult returns the result of the arc method among resinfos.
func arcResult(resinfos string) Status {
	for _, ri := range strings.Split(resinfos, ";") {
		method, result, ok := strings.Cut(ri, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(method), "arc") {
			continue
		}
		word := strings.FieldsFunc(result, func(r rune) bool { return r == ' ' || r == '(' })
		if len(word) > 0 {
			return Status(strings.ToLower(word[0]))
		}
	}
	return ""
}

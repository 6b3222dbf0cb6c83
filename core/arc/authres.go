package arc

import "strings"

// FromAuthResults finds the topmost Authentication-Results field of msg
// whose authserv-id is authservID, the one the gateway added on receipt
// (one from outside with that id must have been removed then), and returns
// its payload unfolded, "authserv-id; spf=…; arc=pass", and the arc= result
// in it. That is what Seal needs when the message comes out of the queue,
// rewritten since it was verified. ok is false without such a field; cv is
// "" when the field has no arc= result.
func FromAuthResults(msg []byte, authservID string) (payload string, cv Status, ok bool) {
	fields, _ := splitMessage(msg)
	for _, f := range fields {
		if !strings.EqualFold(f.name, "Authentication-Results") {
			continue
		}
		p := strings.TrimPrefix(strings.TrimSuffix(relaxedHeader("", f.value), "\r\n"), ":")
		head, rest, _ := strings.Cut(p, ";")
		if id := strings.Fields(head); len(id) == 0 || !strings.EqualFold(id[0], authservID) {
			continue
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

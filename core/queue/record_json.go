package queue

import (
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendRecord appends r as the JSON json.Marshal would write for it (the
// same keys in the same order, the same omitzero fields, the same text
// for every value), without reflection: a record is encoded for every
// accepted message and every attempt, and reflection made that a few
// percent of the CPU per message. TestAppendRecordMatchesMarshal and
// FuzzAppendRecord hold it to json.Marshal.
func appendRecord(b []byte, r *record) ([]byte, error) {
	w := jsonWriter{b: b}
	w.open()
	w.key("v").integer(int64(r.V))
	w.key("id").str(r.ID)
	w.key("envelope").envelope(&r.Envelope)
	w.key("recipients").array(len(r.Recipients), func(i int) { w.rcptState(&r.Recipients[i]) })
	w.key("created").time(r.Created)
	w.key("size").integer(r.Size)
	w.omitInt("attempts", int64(r.Attempts))
	w.omitTime("next_attempt", r.NextAttempt)
	w.omitBool("held", r.Held)
	w.omitBool("delay_warned", r.DelayWarned)
	w.omitInt("hops", int64(r.Hops))
	w.key("body").str(r.Body)
	w.close()
	if w.err != nil {
		return nil, w.err
	}
	return w.b, nil
}

func (w *jsonWriter) envelope(e *envRecord) {
	w.open()
	w.key("sender").addr(e.Sender)
	w.key("recipients").array(len(e.Recipients), func(i int) {
		rc := &e.Recipients[i]
		w.open()
		w.key("address").addr(rc.Address)
		w.omitInt("notify", int64(rc.Notify))
		w.omitStr("orcpt", rc.ORCPT)
		w.close()
	})
	w.omitInt("size", e.Size)
	w.omitStr("body", e.Body)
	w.omitBool("smtputf8", e.SMTPUTF8)
	w.omitStr("ret", e.Ret)
	w.omitStr("envid", e.EnvID)
	w.omitStr("auth", e.Auth)
	w.omitStr("client_ip", e.ClientIP)
	w.omitStr("client_helo", e.ClientHELO)
	w.omitStr("auth_user", e.AuthUser)
	w.omitBool("tls", e.TLS)
	w.omitTime("received", e.Received)
	w.omitBool("submitted", e.Submitted)
	w.omitBool("requiretls", e.RequireTLS)
	w.omitBool("tls_optional", e.TLSOptional)
	w.close()
}

func (w *jsonWriter) rcptState(rs *rcptState) {
	st, err := rs.Status.MarshalText()
	if err != nil && w.err == nil {
		w.err = err
	}
	w.open()
	w.key("status").str(string(st))
	w.omitStr("last_reply", rs.LastReply)
	w.omitStr("tls_policy", rs.TLSPolicy)
	w.omitInt("attempts", int64(rs.Attempts))
	w.omitTime("updated", rs.Updated)
	w.close()
}

func (w *jsonWriter) addr(a addrRecord) {
	w.open()
	w.key("local").str(a.Local)
	w.key("domain").str(a.Domain)
	w.close()
}

// jsonWriter appends JSON to b. comma says whether the next value or key
// needs a comma before it; the first error is kept in err.
type jsonWriter struct {
	b     []byte
	comma bool
	err   error
}

func (w *jsonWriter) sep() {
	if w.comma {
		w.b = append(w.b, ',')
	}
	w.comma = true
}

func (w *jsonWriter) open() {
	w.sep()
	w.b = append(w.b, '{')
	w.comma = false
}

func (w *jsonWriter) close() {
	w.b = append(w.b, '}')
	w.comma = true
}

// key writes k, which needs no escaping, and returns w for its value.
func (w *jsonWriter) key(k string) *jsonWriter {
	w.sep()
	w.b = append(append(append(w.b, '"'), k...), '"', ':')
	w.comma = false
	return w
}

// array writes n elements, each by elem; json.Marshal writes a nil slice
// as null, and a record's slices are never nil.
func (w *jsonWriter) array(n int, elem func(i int)) {
	w.sep()
	w.b = append(w.b, '[')
	w.comma = false
	for i := range n {
		elem(i)
	}
	w.b = append(w.b, ']')
	w.comma = true
}

func (w *jsonWriter) integer(v int64) {
	w.sep()
	w.b = strconv.AppendInt(w.b, v, 10)
}

func (w *jsonWriter) boolean(v bool) {
	w.sep()
	w.b = strconv.AppendBool(w.b, v)
}

// time writes t as time.Time's MarshalJSON does, with its errors for what
// RFC 3339 cannot hold: a year of other than four digits, a zone offset of
// 24 hours or more.
func (w *jsonWriter) time(t time.Time) {
	w.sep()
	n := len(w.b) + 1
	b := t.AppendFormat(append(w.b, '"'), time.RFC3339Nano)
	var err error
	switch {
	case b[n+len("9999")] != '-':
		err = fmt.Errorf("queue: encode record: year %d outside of range [0,9999]", t.Year())
	case b[len(b)-1] != 'Z':
		c, hh := b[len(b)-len("Z07:00")], b[len(b)-len("07:00"):]
		if ('0' <= c && c <= '9') || 10*(hh[0]-'0')+(hh[1]-'0') >= 24 {
			err = fmt.Errorf("queue: encode record: zone offset of %s outside of range [0,23] hours", b[len(b)-len("-07:00"):])
		}
	}
	if err != nil && w.err == nil {
		w.err = err
	}
	w.b = append(b, '"')
}

func (w *jsonWriter) omitInt(k string, v int64) {
	if v != 0 {
		w.key(k).integer(v)
	}
}

func (w *jsonWriter) omitBool(k string, v bool) {
	if v {
		w.key(k).boolean(v)
	}
}

func (w *jsonWriter) omitStr(k, v string) {
	if v != "" {
		w.key(k).str(v)
	}
}

func (w *jsonWriter) omitTime(k string, t time.Time) {
	if !t.IsZero() {
		w.key(k).time(t)
	}
}

// str writes s as a JSON string. Like json.Marshal it escapes <, > and &,
// U+2028 and U+2029, and writes invalid UTF-8 as U+FFFD, so that what is
// decoded is what json.Marshal's output decodes to.
func (w *jsonWriter) str(s string) {
	w.sep()
	const hex = "0123456789abcdef"
	b := append(w.b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(append(b, s[start:i]...), `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(append(b, s[start:i]...), '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	w.b = append(append(b, s[start:]...), '"')
}

// storedText is s as a record stores it: each byte that is not part of
// valid UTF-8 becomes U+FFFD, as json.Marshal (and str) write it, so that
// the message Draft.Committed hands on is the one Get reads back.
func storedText(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return string(b)
}

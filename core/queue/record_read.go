package queue

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// readRecord reads b into r if b is a record as appendRecord writes it
// (its keys in its order, no spaces, no nulls), without reflection: the
// engine reads a record for every attempt, and json.Unmarshal was most of
// the CPU of retrying a queue whose next hop is down. It reports false for
// anything else (an older record, an edited one, a damaged one), and the
// caller then decodes b with json.Unmarshal, which has the last word:
// FuzzReadRecord holds readRecord to give json.Unmarshal's result whenever
// it reports true.
func readRecord(b []byte, r *record) bool {
	d := jsonReader{b: b, ok: true}
	d.open()
	r.V = int(d.key("v").integer(64))
	r.ID = d.key("id").str()
	d.key("envelope").envelope(&r.Envelope)
	d.key("recipients").array(func() { r.Recipients = append(r.Recipients, d.rcptState()) })
	r.Created = d.key("created").time()
	r.Size = d.key("size").integer(64)
	r.Attempts = int(d.optInt("attempts"))
	d.optTime("next_attempt", &r.NextAttempt)
	d.optBool("held", &r.Held)
	d.optBool("delay_warned", &r.DelayWarned)
	r.Hops = int(d.optInt("hops"))
	r.Body = d.key("body").str()
	d.close()
	return d.ok && d.i == len(b)
}

func (d *jsonReader) envelope(e *envRecord) {
	d.open()
	e.Sender = d.key("sender").addr()
	d.key("recipients").array(func() {
		var rc rcptRecord
		d.open()
		rc.Address = d.key("address").addr()
		if d.omitted("notify") {
			rc.Notify = uint8(d.integer(8))
		}
		d.optStr("orcpt", &rc.ORCPT)
		d.close()
		e.Recipients = append(e.Recipients, rc)
	})
	e.Size = d.optInt("size")
	d.optStr("body", &e.Body)
	d.optBool("smtputf8", &e.SMTPUTF8)
	d.optStr("ret", &e.Ret)
	d.optStr("envid", &e.EnvID)
	d.optStr("auth", &e.Auth)
	d.optStr("client_ip", &e.ClientIP)
	d.optStr("client_helo", &e.ClientHELO)
	d.optStr("auth_user", &e.AuthUser)
	d.optBool("tls", &e.TLS)
	d.optTime("received", &e.Received)
	d.optBool("submitted", &e.Submitted)
	d.optBool("requiretls", &e.RequireTLS)
	d.optBool("tls_optional", &e.TLSOptional)
	d.close()
}

func (d *jsonReader) rcptState() rcptState {
	var rs rcptState
	d.open()
	if st := d.key("status").str(); d.ok && rs.Status.UnmarshalText([]byte(st)) != nil {
		d.ok = false
	}
	d.optStr("last_reply", &rs.LastReply)
	d.optStr("tls_policy", &rs.TLSPolicy)
	rs.Attempts = int(d.optInt("attempts"))
	d.optTime("updated", &rs.Updated)
	d.close()
	return rs
}

func (d *jsonReader) addr() addrRecord {
	d.open()
	a := addrRecord{Local: d.key("local").str()}
	a.Domain = d.key("domain").str()
	d.close()
	return a
}

// jsonReader reads the JSON appendRecord writes. Once ok is false every
// method does nothing and returns zero values.
type jsonReader struct {
	b     []byte
	i     int
	first bool // just after '{' or '[': no comma before the next item
	ok    bool
}

// lit consumes s if the input continues with it, and reports whether it did.
func (d *jsonReader) lit(s string) bool {
	if !d.ok || len(d.b)-d.i < len(s) || string(d.b[d.i:d.i+len(s)]) != s {
		return false
	}
	d.i += len(s)
	return true
}

func (d *jsonReader) want(s string) {
	if !d.lit(s) {
		d.ok = false
	}
}

func (d *jsonReader) open() {
	d.want("{")
	d.first = true
}

func (d *jsonReader) close() {
	d.want("}")
	d.first = false
}

// key consumes the next key, which must be k.
func (d *jsonReader) key(k string) *jsonReader {
	if !d.omitted(k) {
		d.ok = false
	}
	return d
}

// omitted consumes the next key if it is k and reports whether it did: a
// field appendRecord leaves out when it is zero.
func (d *jsonReader) omitted(k string) bool {
	if !d.ok {
		return false
	}
	at := d.i
	if !d.first && !d.lit(",") || !d.lit(`"`) || !d.lit(k) || !d.lit(`":`) {
		d.i = at
		return false
	}
	d.first = false
	return true
}

// optInt returns the integer of key k, 0 if the record left k out.
func (d *jsonReader) optInt(k string) int64 {
	if d.omitted(k) {
		return d.integer(64)
	}
	return 0
}

func (d *jsonReader) optStr(k string, v *string) {
	if d.omitted(k) {
		*v = d.str()
	}
}

func (d *jsonReader) optBool(k string, v *bool) {
	if d.omitted(k) {
		*v = d.boolean()
	}
}

func (d *jsonReader) optTime(k string, v *time.Time) {
	if d.omitted(k) {
		*v = d.time()
	}
}

// array reads a JSON array, calling elem for each element.
func (d *jsonReader) array(elem func()) {
	d.want("[")
	for n := 0; d.ok && !d.lit("]"); n++ {
		if n > 0 {
			d.want(",")
		}
		elem()
	}
	d.first = false
}

// integer reads a JSON integer that fits in a signed (bits 64) or
// unsigned (bits 8) integer, as json.Unmarshal requires of the field.
func (d *jsonReader) integer(bits int) int64 {
	if !d.ok {
		return 0
	}
	start := d.i
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	digits := d.i
	for d.i < len(d.b) && '0' <= d.b[d.i] && d.b[d.i] <= '9' {
		d.i++
	}
	n := d.i - digits
	if n == 0 || n > 1 && d.b[digits] == '0' {
		d.ok = false
		return 0
	}
	s := string(d.b[start:d.i])
	var v int64
	var err error
	if bits == 8 {
		var u uint64
		u, err = strconv.ParseUint(s, 10, 8)
		v = int64(u)
	} else {
		v, err = strconv.ParseInt(s, 10, 64)
	}
	if err != nil {
		d.ok = false
		return 0
	}
	return v
}

func (d *jsonReader) boolean() bool {
	switch {
	case d.lit("true"):
		return true
	case d.lit("false"):
		return false
	}
	d.ok = false
	return false
}

// time reads a time as time.Time's UnmarshalJSON does (json.Unmarshal
// calls it too), from a string without escapes.
func (d *jsonReader) time() time.Time {
	start := d.i
	d.str()
	var t time.Time
	if d.ok && t.UnmarshalJSON(d.b[start:d.i]) != nil {
		d.ok = false
	}
	return t
}

// str reads a JSON string. It takes the escapes appendRecord writes (\"
// \\ \/ \b \f \n \r \t, and \u for the rest but surrogates); anything it does not
// take, invalid UTF-8 included (which json.Unmarshal replaces), makes the
// record one for json.Unmarshal.
func (d *jsonReader) str() string {
	if !d.lit(`"`) {
		d.ok = false
		return ""
	}
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			s := string(d.b[start:d.i])
			d.i++
			return s
		case c == '\\':
			return d.escapedStr(start)
		case c < 0x20:
			d.ok = false
			return ""
		case c < utf8.RuneSelf:
			d.i++
		default:
			r, n := utf8.DecodeRune(d.b[d.i:])
			if r == utf8.RuneError && n == 1 {
				d.ok = false
				return ""
			}
			d.i += n
		}
	}
	d.ok = false
	return ""
}

// escapedStr goes on with a string from its first backslash; start is
// where its text began.
func (d *jsonReader) escapedStr(start int) string {
	out := append([]byte(nil), d.b[start:d.i]...)
	for d.ok && d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return string(out)
		case c == '\\' && d.i+1 < len(d.b):
			out = d.escape(out)
		case c < 0x20 || c == '\\':
			d.ok = false
		case c < utf8.RuneSelf:
			out = append(out, c)
			d.i++
		default:
			r, n := utf8.DecodeRune(d.b[d.i:])
			if r == utf8.RuneError && n == 1 {
				d.ok = false
			}
			out = append(out, d.b[d.i:d.i+n]...)
			d.i += n
		}
	}
	d.ok = false
	return ""
}

// escape appends the character of the escape at d.i to out.
func (d *jsonReader) escape(out []byte) []byte {
	c := d.b[d.i+1]
	d.i += 2
	switch c {
	case '"', '\\', '/':
		return append(out, c)
	case 'n':
		return append(out, '\n')
	case 'r':
		return append(out, '\r')
	case 't':
		return append(out, '\t')
	case 'b':
		return append(out, '\b')
	case 'f':
		return append(out, '\f')
	case 'u':
		if len(d.b)-d.i >= 4 {
			if v, err := strconv.ParseUint(string(d.b[d.i:d.i+4]), 16, 16); err == nil && utf8.ValidRune(rune(v)) {
				d.i += 4
				return utf8.AppendRune(out, rune(v))
			}
		}
	}
	d.ok = false
	return out
}

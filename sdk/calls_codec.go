package sdk

import (
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// A lean codec for the hook request of the call channel: the same
// protobuf encoding of pb.HandleRequest (a plugin or a host built
// before it reads it as it did), written straight from a Request and read
// straight into one, without the pb messages between. The generated
// code's reflection, its per-message allocations and the conversions cost
// about 2 µs to encode a rcpt request and 3-4 µs to decode it, which the
// lean codec does in a fraction of that. It leaves to the generated code
// what it does not take: a request with a message (data, predelivery),
// and on reading anything it does not expect (field 7, unknown fields, a
// field twice that protobuf would merge, invalid UTF-8), where
// parseRequest answers false and the caller decodes with proto.Unmarshal.

// continueReply is the encoding of the commonest reply, a continue with
// no effects (toPBHandleResponse(Decision{}, Effects{}): an empty
// decision), which the plugin writes as it is and the host reads by
// comparison, without the generated code.
const continueReply = "\x0a\x00"

// appendContinueReply appends continueReply to b.
func appendContinueReply(b []byte) ([]byte, error) { return append(b, continueReply...), nil }

// The field numbers of plugin.proto's messages the codec writes.
const (
	fieldReqStage, fieldReqSession, fieldReqTxn, fieldReqRcpt         = 1, 2, 3, 4
	fieldReqCommand, fieldReqArg, fieldReqMessage, fieldReqNotes      = 5, 6, 7, 8
	fieldSesID, fieldSesListener, fieldSesClientIP, fieldSesPort      = 1, 2, 3, 4
	fieldSesHELO, fieldSesESMTP, fieldSesTLS, fieldSesAuthUser        = 5, 6, 7, 8
	fieldTxnSender, fieldTxnRecipients, fieldTxnSize, fieldTxnBody    = 1, 2, 3, 4
	fieldTxnSMTPUTF8, fieldTxnRet, fieldTxnEnvID, fieldTxnReceived    = 5, 6, 7, 8
	fieldRcptAddress, fieldRcptNotify, fieldRcptORCPT                 = 1, 2, 3
	fieldAddrLocal, fieldAddrDomain, fieldTimeSeconds, fieldTimeNanos = 1, 2, 1, 2
	fieldMapKey, fieldMapValue                                        = 1, 2
)

// appendRequest appends r's encoding to b; ok is false (b unchanged) for
// a request with a message, which the generated code encodes.
func appendRequest(b []byte, r *Request) (_ []byte, ok bool) {
	if r.Message != nil {
		return b, false
	}
	b = appendString(b, fieldReqStage, string(r.Stage))
	if s := r.Session; s != nil {
		b = appendNested(b, fieldReqSession, func(b []byte) []byte { return appendSession(b, s) })
	}
	if t := r.Txn; t != nil {
		b = appendNested(b, fieldReqTxn, func(b []byte) []byte { return appendTxn(b, t) })
	}
	if rc := r.Rcpt; rc != nil {
		b = appendNested(b, fieldReqRcpt, func(b []byte) []byte { return appendRecipient(b, rc) })
	}
	b = appendString(b, fieldReqCommand, r.Command)
	b = appendString(b, fieldReqArg, r.Arg)
	for k, v := range r.Notes {
		b = appendNested(b, fieldReqNotes, func(b []byte) []byte {
			b = appendString(b, fieldMapKey, k)
			return appendString(b, fieldMapValue, v)
		})
	}
	return b, true
}

func appendSession(b []byte, s *Session) []byte {
	b = appendString(b, fieldSesID, s.ID)
	b = appendString(b, fieldSesListener, s.Listener)
	b = appendString(b, fieldSesClientIP, s.ClientIP)
	b = appendVarint(b, fieldSesPort, uint64(int64(clampInt32(s.Port))))
	b = appendString(b, fieldSesHELO, s.HELO)
	b = appendBool(b, fieldSesESMTP, s.ESMTP)
	b = appendBool(b, fieldSesTLS, s.TLS)
	return appendString(b, fieldSesAuthUser, s.AuthUser)
}

func appendTxn(b []byte, t *Txn) []byte {
	b = appendNested(b, fieldTxnSender, func(b []byte) []byte { return appendAddress(b, t.Sender) })
	for i := range t.Recipients {
		b = appendNested(b, fieldTxnRecipients, func(b []byte) []byte { return appendRecipient(b, &t.Recipients[i]) })
	}
	b = appendVarint(b, fieldTxnSize, uint64(t.Size))
	b = appendString(b, fieldTxnBody, t.Body)
	b = appendBool(b, fieldTxnSMTPUTF8, t.SMTPUTF8)
	b = appendString(b, fieldTxnRet, t.Ret)
	b = appendString(b, fieldTxnEnvID, t.EnvID)
	if !t.Received.IsZero() { // as timestamppb.New
		b = appendNested(b, fieldTxnReceived, func(b []byte) []byte {
			b = appendVarint(b, fieldTimeSeconds, uint64(t.Received.Unix()))
			return appendVarint(b, fieldTimeNanos, uint64(int64(t.Received.Nanosecond())))
		})
	}
	return b
}

func appendRecipient(b []byte, r *Recipient) []byte {
	b = appendNested(b, fieldRcptAddress, func(b []byte) []byte { return appendAddress(b, r.Address) })
	for _, n := range r.Notify {
		b = protowire.AppendTag(b, fieldRcptNotify, protowire.BytesType)
		b = protowire.AppendString(b, n)
	}
	return appendString(b, fieldRcptORCPT, r.ORCPT)
}

func appendAddress(b []byte, a Address) []byte {
	b = appendString(b, fieldAddrLocal, a.Local)
	return appendString(b, fieldAddrDomain, a.Domain)
}

// appendNested appends field num, a message that body appends, with its
// length before it.
func appendNested(b []byte, num protowire.Number, body func([]byte) []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	at := len(b)
	b = append(b, 0) // room for a length under 128, the usual case
	b = body(b)
	n := len(b) - at - 1
	if n < 0x80 {
		b[at] = byte(n)
		return b
	}
	size := protowire.SizeVarint(uint64(n))
	b = append(b, make([]byte, size-1)...)
	copy(b[at+size:], b[at+1:at+1+n])
	protowire.AppendVarint(b[at:at], uint64(n))
	return b
}

// appendString appends a string field; proto3 leaves out an empty one.
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// appendVarint appends a varint field; proto3 leaves out a zero.
func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendBool(b []byte, num protowire.Number, v bool) []byte {
	if !v {
		return b
	}
	return appendVarint(b, num, 1)
}

// parseRequest decodes a pb.HandleRequest's encoding into the Request
// that fromPBRequest would make of it; ok is false when the encoding has
// anything the lean codec leaves to the generated code (see above), or
// is malformed: the caller then decodes it with proto.Unmarshal, which
// says what is wrong with it.
func parseRequest(payload []byte) (r *Request, ok bool) {
	p := wireParser{s: string(payload)} // one copy: every string is a piece of it
	parts := new(requestParts)          // one allocation for the request and its parts
	r = &parts.r
	for p.more() {
		num, typ := p.tag()
		if typ != protowire.BytesType {
			return nil, false
		}
		switch num {
		case fieldReqStage:
			r.Stage = Stage(p.str())
		case fieldReqCommand:
			r.Command = p.str()
		case fieldReqArg:
			r.Arg = p.str()
		case fieldReqSession:
			if r.Session != nil {
				return nil, false // twice: protobuf merges them
			}
			r.Session = &parts.s
			p.session(r.Session)
		case fieldReqTxn:
			if r.Txn != nil {
				return nil, false
			}
			r.Txn = &parts.t
			p.txn(r.Txn)
		case fieldReqRcpt:
			if r.Rcpt != nil {
				return nil, false
			}
			parts.rc = p.recipient()
			r.Rcpt = &parts.rc
		case fieldReqNotes:
			k, v := p.mapEntry()
			if r.Notes == nil {
				r.Notes = make(map[string]string)
			}
			r.Notes[k] = v
		default:
			return nil, false
		}
	}
	if p.bad {
		return nil, false
	}
	if len(r.Notes) == 0 {
		r.Notes = nil
	}
	return r, true
}

// requestParts holds a parsed request and the parts it points to.
type requestParts struct {
	r  Request
	s  Session
	t  Txn
	rc Recipient
}

// wireParser reads protobuf fields from s; bad, once set, stays set and
// every read after it returns zero values.
type wireParser struct {
	s   string
	bad bool
}

func (p *wireParser) more() bool { return !p.bad && len(p.s) > 0 }

// fail marks the input as one for the generated code.
func (p *wireParser) fail() { p.bad, p.s = true, "" }

// uvarint reads a varint as protowire.ConsumeVarint does: at most ten
// bytes, the tenth at most 1.
func (p *wireParser) uvarint() uint64 {
	var v uint64
	for i := 0; i < len(p.s) && i < 10; i++ {
		c := p.s[i]
		if i == 9 && c > 1 {
			break
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			p.s = p.s[i+1:]
			return v
		}
	}
	p.fail()
	return 0
}

// tag reads a field's number and wire type.
func (p *wireParser) tag() (protowire.Number, protowire.Type) {
	v := p.uvarint()
	num, typ := protowire.Number(v>>3), protowire.Type(v&7)
	if v>>3 < uint64(protowire.MinValidNumber) || v>>3 > uint64(protowire.MaxValidNumber) {
		p.fail()
	}
	return num, typ
}

// varint reads a varint field's value.
func (p *wireParser) varint(typ protowire.Type) uint64 {
	if typ != protowire.VarintType {
		p.fail()
		return 0
	}
	return p.uvarint()
}

// bytes reads a length-delimited value.
func (p *wireParser) bytes() string {
	n := p.uvarint()
	if p.bad || n > uint64(len(p.s)) {
		p.fail()
		return ""
	}
	out := p.s[:n]
	p.s = p.s[n:]
	return out
}

// str reads a string, which proto3 wants valid UTF-8.
func (p *wireParser) str() string {
	s := p.bytes()
	if !utf8.ValidString(s) {
		p.fail()
		return ""
	}
	return s
}

// sub returns a parser of the message that p reads next; join hands
// its failure back to p.
func (p *wireParser) sub() wireParser { return wireParser{s: p.bytes(), bad: p.bad} }

func (p *wireParser) join(q *wireParser) {
	if q.bad {
		p.fail()
	}
}

// strField reads a string field into dst, or fails when typ is not a
// string's.
func (p *wireParser) strField(typ protowire.Type, dst *string) {
	if typ != protowire.BytesType {
		p.fail()
		return
	}
	*dst = p.str()
}

func (p *wireParser) session(s *Session) {
	q := p.sub()
	for q.more() {
		switch num, typ := q.tag(); num {
		case fieldSesID:
			q.strField(typ, &s.ID)
		case fieldSesListener:
			q.strField(typ, &s.Listener)
		case fieldSesClientIP:
			q.strField(typ, &s.ClientIP)
		case fieldSesPort:
			s.Port = int(int32(q.varint(typ)))
		case fieldSesHELO:
			q.strField(typ, &s.HELO)
		case fieldSesESMTP:
			s.ESMTP = q.varint(typ) != 0
		case fieldSesTLS:
			s.TLS = q.varint(typ) != 0
		case fieldSesAuthUser:
			q.strField(typ, &s.AuthUser)
		default:
			q.fail()
		}
	}
	p.join(&q)
}

func (p *wireParser) txn(t *Txn) {
	var sender, received bool
	q := p.sub()
	for q.more() {
		num, typ := q.tag()
		switch {
		case typ == protowire.BytesType && num == fieldTxnSender && !sender:
			sender, t.Sender = true, q.address()
		case typ == protowire.BytesType && num == fieldTxnRecipients:
			t.Recipients = append(t.Recipients, q.recipient())
		case num == fieldTxnSize:
			t.Size = int64(q.varint(typ))
		case num == fieldTxnBody:
			q.strField(typ, &t.Body)
		case num == fieldTxnSMTPUTF8:
			t.SMTPUTF8 = q.varint(typ) != 0
		case num == fieldTxnRet:
			q.strField(typ, &t.Ret)
		case num == fieldTxnEnvID:
			q.strField(typ, &t.EnvID)
		case typ == protowire.BytesType && num == fieldTxnReceived && !received:
			received, t.Received = true, q.timestamp()
		default:
			q.fail() // a second sender or time: protobuf merges them
		}
	}
	p.join(&q)
}

func (p *wireParser) recipient() Recipient {
	var r Recipient
	var addr bool
	q := p.sub()
	for q.more() {
		num, typ := q.tag()
		switch {
		case typ == protowire.BytesType && num == fieldRcptAddress && !addr:
			addr, r.Address = true, q.address()
		case typ == protowire.BytesType && num == fieldRcptNotify:
			r.Notify = append(r.Notify, q.str())
		case num == fieldRcptORCPT:
			q.strField(typ, &r.ORCPT)
		default:
			q.fail()
		}
	}
	p.join(&q)
	return r
}

func (p *wireParser) address() Address {
	var a Address
	q := p.sub()
	for q.more() {
		switch num, typ := q.tag(); num {
		case fieldAddrLocal:
			q.strField(typ, &a.Local)
		case fieldAddrDomain:
			q.strField(typ, &a.Domain)
		default:
			q.fail()
		}
	}
	p.join(&q)
	return a
}

// timestamp reads a google.protobuf.Timestamp as fromPBTxn does: one out
// of its valid range (years 1 to 9999, nanos under a second) is the zero
// time.
func (p *wireParser) timestamp() time.Time {
	var secs, nanos int64
	q := p.sub()
	for q.more() {
		switch num, typ := q.tag(); num {
		case fieldTimeSeconds:
			secs = int64(q.varint(typ))
		case fieldTimeNanos:
			nanos = int64(int32(q.varint(typ)))
		default:
			q.fail()
		}
	}
	p.join(&q)
	const minSecs, maxSecs = -62135596800, 253402300799
	if secs < minSecs || secs > maxSecs || nanos < 0 || nanos >= 1e9 {
		return time.Time{}
	}
	return time.Unix(secs, nanos).UTC()
}

// mapEntry reads a notes entry; a missing key or value is "".
func (p *wireParser) mapEntry() (k, v string) {
	q := p.sub()
	for q.more() {
		switch num, typ := q.tag(); num {
		case fieldMapKey:
			q.strField(typ, &k)
		case fieldMapValue:
			q.strField(typ, &v)
		default:
			q.fail()
		}
	}
	p.join(&q)
	return k, v
}

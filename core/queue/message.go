package queue

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/mailgate/gateway/core/envelope"
)

// recordVersion is the schema version written into every record ("v").
const recordVersion = 1

// Status is the delivery state of one recipient of a queued message. The zero
// value is Pending. It marshals as text: "pending", "delivered", "deferred",
// "failed".
type Status uint8

const (
	Pending   Status = iota // not yet attempted, or due again
	Delivered               // accepted by the next hop
	Deferred                // temporary failure; retried later
	Failed                  // permanent failure or expired; bounced
)

// String returns the lower-case name of st, or "status(N)" if unknown.
func (st Status) String() string {
	switch st {
	case Pending:
		return "pending"
	case Delivered:
		return "delivered"
	case Deferred:
		return "deferred"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("status(%d)", uint8(st))
}

// final reports whether st is the end of a recipient's delivery:
// delivered or failed.
func (st Status) final() bool { return st == Delivered || st == Failed }

// MarshalText implements encoding.TextMarshaler.
func (st Status) MarshalText() ([]byte, error) {
	if st > Failed {
		return nil, fmt.Errorf("queue: unknown status %d", uint8(st))
	}
	return []byte(st.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (st *Status) UnmarshalText(b []byte) error {
	for v := Pending; v <= Failed; v++ {
		if string(b) == v.String() {
			*st = v
			return nil
		}
	}
	return fmt.Errorf("queue: unknown status %q", b)
}

// Message is one queued message as stored: its envelope, the state of each
// recipient, and the retry schedule. The content is read with Spool.Body.
type Message struct {
	Version     int // schema version of the stored record, 1
	ID          string
	Envelope    envelope.Envelope
	Recipients  []RecipientState // aligned with Envelope.Recipients
	Created     time.Time
	Size        int64 // header+content bytes
	Attempts    int
	NextAttempt time.Time // zero = due now
	Held        bool
	DelayWarned bool // a delay DSN has been sent for this message (once only)
	// Hops is the number of Received fields in the stored message, as
	// the delivery engine counted them at its first attempt, so that a
	// retry need not read the body again; 0 = not counted yet (every
	// message has one at least: ours).
	Hops int

	spilled bool // content is in bodies/<ID>; only the header is in the bodies bucket
}

// RecipientState is the delivery state of one recipient.
type RecipientState struct {
	Status    Status
	LastReply string // last SMTP reply or error text, or why it was not tried (Draft.Park)
	// TLSPolicy is the TLS level the last SMTP attempt ran under (dane,
	// mta-sts, verify, encrypt, opportunistic, none); "" for other
	// transports or none yet.
	TLSPolicy string
	Attempts  int
	Updated   time.Time
}

// The types below are the on-disk JSON shape of a Message. They are kept apart
// from the Go types so that renaming a field in envelope or here does not
// change the stored format, which outlives releases. Decoding tolerates
// missing and unknown fields.

type record struct {
	V           int         `json:"v"`
	ID          string      `json:"id"`
	Envelope    envRecord   `json:"envelope"`
	Recipients  []rcptState `json:"recipients"`
	Created     time.Time   `json:"created"`
	Size        int64       `json:"size"`
	Attempts    int         `json:"attempts,omitzero"`
	NextAttempt time.Time   `json:"next_attempt,omitzero"`
	Held        bool        `json:"held,omitzero"`
	DelayWarned bool        `json:"delay_warned,omitzero"`
	Hops        int         `json:"hops,omitzero"`
	Body        string      `json:"body"` // "inline" (bodies bucket) or "file" (bodies/<id>)
}

const (
	bodyInline = "inline"
	bodyFile   = "file"
)

type rcptState struct {
	Status    Status    `json:"status"`
	LastReply string    `json:"last_reply,omitzero"`
	TLSPolicy string    `json:"tls_policy,omitzero"`
	Attempts  int       `json:"attempts,omitzero"`
	Updated   time.Time `json:"updated,omitzero"`
}

type addrRecord struct {
	Local  string `json:"local"`
	Domain string `json:"domain"`
}

type rcptRecord struct {
	Address addrRecord `json:"address"`
	Notify  uint8      `json:"notify,omitzero"`
	ORCPT   string     `json:"orcpt,omitzero"`
}

type envRecord struct {
	Sender     addrRecord   `json:"sender"`
	Recipients []rcptRecord `json:"recipients"`
	Size       int64        `json:"size,omitzero"`
	Body       string       `json:"body,omitzero"`
	SMTPUTF8   bool         `json:"smtputf8,omitzero"`
	Ret        string       `json:"ret,omitzero"`
	EnvID      string       `json:"envid,omitzero"`
	Auth       string       `json:"auth,omitzero"`
	ClientIP   string       `json:"client_ip,omitzero"`
	ClientHELO string       `json:"client_helo,omitzero"`
	AuthUser   string       `json:"auth_user,omitzero"`
	TLS        bool         `json:"tls,omitzero"`
	Received   time.Time    `json:"received,omitzero"`
	Submitted  bool         `json:"submitted,omitzero"`

	// RFC 8689: records spooled before these fields existed read as false.
	RequireTLS  bool `json:"requiretls,omitzero"`
	TLSOptional bool `json:"tls_optional,omitzero"`
}

func encodeMessage(m *Message) ([]byte, error) {
	e := &m.Envelope
	r := record{
		V:           recordVersion,
		ID:          m.ID,
		Created:     m.Created,
		Size:        m.Size,
		Attempts:    m.Attempts,
		NextAttempt: m.NextAttempt,
		Held:        m.Held,
		DelayWarned: m.DelayWarned,
		Hops:        m.Hops,
		Body:        bodyInline,
		Envelope: envRecord{
			Sender:     addrRecord{Local: e.Sender.Local, Domain: e.Sender.Domain},
			Recipients: make([]rcptRecord, len(e.Recipients)),
			Size:       e.Size,
			Body:       string(e.Body),
			SMTPUTF8:   e.SMTPUTF8,
			Ret:        string(e.Ret),
			EnvID:      e.EnvID,
			Auth:       e.Auth,
			ClientIP:   e.ClientIP,
			ClientHELO: e.ClientHELO,
			AuthUser:   e.AuthUser,
			TLS:        e.TLS,
			Received:   e.Received,
			Submitted:  e.Submitted,

			RequireTLS:  e.RequireTLS, // RFC 8689
			TLSOptional: e.TLSOptional,
		},
		Recipients: make([]rcptState, len(m.Recipients)),
	}
	if m.spilled {
		r.Body = bodyFile
	}
	for i, rc := range e.Recipients {
		r.Envelope.Recipients[i] = rcptRecord{
			Address: addrRecord{Local: rc.Address.Local, Domain: rc.Address.Domain},
			Notify:  uint8(rc.Notify),
			ORCPT:   rc.ORCPT,
		}
	}
	for i, rs := range m.Recipients {
		r.Recipients[i] = rcptState(rs)
	}
	b, err := appendRecord(make([]byte, 0, 512), &r)
	if err != nil {
		return nil, fmt.Errorf("queue: encode %s: %w", m.ID, err)
	}
	return b, nil
}

// recordMeta is the part of a record that Body and Delete need: where the
// content is and the schedule key. Decoding only these fields skips the
// envelope, the bulk of the record.
type recordMeta struct {
	ID          string    `json:"id"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	Held        bool      `json:"held,omitzero"`
	Body        string    `json:"body"`
}

// decodeMeta decodes a stored record's recordMeta into a Message that has
// only ID, NextAttempt, Held and spilled set.
func decodeMeta(b []byte) (*Message, error) {
	var full record
	if readRecord(b, &full) {
		return &Message{ID: full.ID, NextAttempt: full.NextAttempt, Held: full.Held, spilled: full.Body == bodyFile}, nil
	}
	var r recordMeta
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("queue: decode record: %w", err)
	}
	return &Message{ID: r.ID, NextAttempt: r.NextAttempt, Held: r.Held, spilled: r.Body == bodyFile}, nil
}

// decodeMessage decodes a stored record. A missing "v" is read as version 1;
// recipient states missing from the record are filled in as Pending so that
// Recipients is always aligned with Envelope.Recipients.
func decodeMessage(b []byte) (*Message, error) {
	var r record
	if !readRecord(b, &r) {
		r = record{}
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("queue: decode record: %w", err)
		}
	}
	if r.V == 0 {
		r.V = recordVersion
	}
	m := &Message{
		Version:     r.V,
		ID:          r.ID,
		Created:     r.Created,
		Size:        r.Size,
		Attempts:    r.Attempts,
		NextAttempt: r.NextAttempt,
		Held:        r.Held,
		DelayWarned: r.DelayWarned,
		Hops:        r.Hops,
		spilled:     r.Body == bodyFile,
		Envelope: envelope.Envelope{
			Sender:     envelope.Address{Local: r.Envelope.Sender.Local, Domain: r.Envelope.Sender.Domain},
			Size:       r.Envelope.Size,
			Body:       envelope.Body(r.Envelope.Body),
			SMTPUTF8:   r.Envelope.SMTPUTF8,
			Ret:        envelope.Ret(r.Envelope.Ret),
			EnvID:      r.Envelope.EnvID,
			Auth:       r.Envelope.Auth,
			ClientIP:   r.Envelope.ClientIP,
			ClientHELO: r.Envelope.ClientHELO,
			AuthUser:   r.Envelope.AuthUser,
			TLS:        r.Envelope.TLS,
			Received:   r.Envelope.Received,
			Submitted:  r.Envelope.Submitted,

			RequireTLS:  r.Envelope.RequireTLS, // RFC 8689
			TLSOptional: r.Envelope.TLSOptional,
		},
	}
	if n := len(r.Envelope.Recipients); n > 0 {
		m.Envelope.Recipients = make([]envelope.Recipient, n)
		for i, rc := range r.Envelope.Recipients {
			m.Envelope.Recipients[i] = envelope.Recipient{
				Address: envelope.Address{Local: rc.Address.Local, Domain: rc.Address.Domain},
				Notify:  envelope.Notify(rc.Notify),
				ORCPT:   rc.ORCPT,
			}
		}
	}
	n := max(len(r.Recipients), len(m.Envelope.Recipients))
	if n > 0 {
		m.Recipients = make([]RecipientState, n)
		for i, rs := range r.Recipients {
			m.Recipients[i] = RecipientState(rs)
		}
	}
	return m, nil
}

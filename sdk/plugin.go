package sdk

import (
	"context"
	"errors"
	"time"
)

// ProtocolVersion is the plugin wire protocol this sdk speaks. A host and a
// plugin that share no version refuse each other with a clear error.
// Version 2 added the call channel (calls.go): hook calls on a socket the
// host passes as CallsFDEnv instead of a gRPC call each.
const ProtocolVersion = 2

// Session is the read-only view of an SMTP connection given to plugins.
type Session struct {
	ID       string
	Listener string
	ClientIP string // no port; "" when unknown (predelivery)
	Port     int
	HELO     string
	ESMTP    bool
	TLS      bool
	AuthUser string
}

// Recipient is one forward-path with its DSN parameters.
type Recipient struct {
	Address Address
	Notify  []string // "NEVER", or some of "SUCCESS", "FAILURE", "DELAY"; nil = not given
	ORCPT   string
}

// Txn is the read-only view of a mail transaction (MAIL FROM to the end of
// DATA), or of a queued message at predelivery.
type Txn struct {
	Sender     Address
	Recipients []Recipient // at predelivery: the recipients of the destination
	Size       int64       // SIZE= declared
	Body       string      // BODY=
	SMTPUTF8   bool
	Ret        string // RET=
	EnvID      string // ENVID=
	Received   time.Time
}

// Message is the read-only view of a message at data and predelivery.
type Message struct {
	Header    []HeaderField // in order, values unfolded
	Body      []byte        // the body after the header section, up to the host's limit
	Truncated bool          // Body stops at the limit
	Size      int64         // the whole message in bytes
	// Auth is what the gateway's checks of inbound mail found (SPF, DKIM,
	// DMARC, ARC) at the data stage; nil when it made none (no
	// authentication block, or a client in relay.networks or
	// authenticated) and at predelivery.
	Auth *AuthResults
}

// Request is one hook call: the stage and what is known at it.
type Request struct {
	Stage   Stage
	Session *Session   // nil at predelivery and queue notifications
	Txn     *Txn       // nil before MAIL
	Rcpt    *Recipient // rcpt: the recipient being decided; predelivery and notifications: the first of the destination
	Command string     // command stage: the verb
	Arg     string     // command: the argument; auth: the mechanism; predelivery: the destination domain
	Message *Message   // data, predelivery
	// Notes are the notes written so far by the hooks of the connection
	// and of the transaction, this plugin's included, keyed
	// "<hook>/<name>" ("lua.relay/score", "plugin.lists/list"): what an
	// earlier hook (or stage) wants later ones to know. A transaction's
	// notes end with it. Predelivery and the queue notifications have none.
	Notes map[string]string
}

// Hook interfaces: a plugin implements the ones for the stages it handles.
// Each returns a Decision (the zero value continues) and Effects; an error
// means the plugin could not decide, and the host applies on_error.
type (
	ConnectHook interface {
		Connect(ctx context.Context, r *Request) (Decision, Effects, error)
	}
	HeloHook interface {
		Helo(ctx context.Context, r *Request) (Decision, Effects, error)
	}
	AuthHook interface {
		Auth(ctx context.Context, r *Request) (Decision, Effects, error)
	}
	MailHook interface {
		Mail(ctx context.Context, r *Request) (Decision, Effects, error)
	}
	RcptHook interface {
		Rcpt(ctx context.Context, r *Request) (Decision, Effects, error)
	}
	CommandHook interface {
		Command(ctx context.Context, r *Request) (Decision, Effects, error)
	}
	DataHook interface {
		Data(ctx context.Context, r *Request) (Decision, Effects, error)
	}
	PredeliveryHook interface {
		Predelivery(ctx context.Context, r *Request) (Decision, Effects, error)
	}
	// NotifyHook receives delivered, deferred, bounced and disconnect.
	NotifyHook interface {
		Notify(ctx context.Context, r *Request) error
	}
)

// ConfigField describes one setting of a plugin's config block; the host
// checks the HCL block against these before any mail flows.
type ConfigField struct {
	Name        string
	Type        string // "string", "number", "bool", "list(string)", "map(string)"
	Required    bool
	Default     any // nil = none
	Description string
}

// Info is what a plugin says about itself at handshake.
type Info struct {
	Name             string
	Version          string
	ProtocolVersions []int   // filled in by Serve
	Stages           []Stage // filled in by Serve from the hook interfaces implemented
	Schema           []ConfigField
	Transports       []string // transport names the plugin provides (Transport interface)
}

// Describer is implemented by every plugin: its name, version, schema and
// transports.
type Describer interface {
	Info() Info
}

// Configurer receives the plugin's config block (as checked against the
// schema: string, float64, bool, []string, map[string]string) and the host's
// services, before any other call. A ConfigError return is reported with
// file:line by the host.
type Configurer interface {
	Configure(ctx context.Context, config map[string]any, host Host) error
}

// ConfigError is a problem with one setting, reported by Configure.
type ConfigError struct {
	Field   string
	Message string
}

func (e *ConfigError) Error() string { return "config: " + e.Field + ": " + e.Message }

// Host is what the gateway offers a plugin (through go-plugin's broker):
// DNS through the gateway's resolver, two key-value stores, and logging.
// Lua scripts get the same services with the same limits and error texts
// (gw.dns, gw.durable, gw.ephemeral, gw.log; core/hostsvc implements
// both). A plugin's keys are its own: the gateway stores them under
// "plugin.<name>/", so no other plugin or script sees them.
type Host interface {
	LookupMX(ctx context.Context, domain string) ([]MX, error)
	LookupIP(ctx context.Context, host string) ([]string, error)
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupPTR(ctx context.Context, ip string) ([]string, error)
	// Durable is the store that survives a restart of the gateway (the
	// spool's database): every write is a disk commit before it returns.
	// Use it for what must not be forgotten, such as greylisting.
	Durable() KV
	// Ephemeral is the gateway's in-memory store: a write never touches
	// the disk, everything is lost on restart, and when the store is full
	// it drops the entries closest to expiry. Use it for what may be lost:
	// rate counters, per-transaction marks.
	Ephemeral() KV
	// Log writes a line to the gateway's log, tagged with the plugin's
	// name. level is "debug", "info", "warn" or "error"; any other level
	// is an error and nothing is logged. The first LogMaxFields fields
	// in key order are kept, each value cut at LogMaxValue bytes; the
	// message is cut at LogMaxMessage bytes and made one line.
	Log(ctx context.Context, level, msg string, fields map[string]string) error
}

// KV is one of the host's key-value stores. Keys are 1 to KVMaxKey bytes,
// values at most KVMaxValue bytes; a ttl is from 0 (no expiry) to
// KVMaxTTL. An expired key reads as absent.
type KV interface {
	// Get returns the value of key, and whether it is set.
	Get(ctx context.Context, key string) (value string, ok bool, err error)
	// Set stores value under key, expiring ttl from now.
	Set(ctx context.Context, key, value string, ttl time.Duration) error
	// Incr adds delta to the decimal integer stored under key and returns
	// the result. An absent or expired key counts as 0 and gets an expiry
	// of ttl from now; an existing key keeps the expiry it has. A value
	// that is not an integer, or a result past the int64 range, is an
	// error and changes nothing.
	Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error)
	// Delete removes key; deleting an absent key is not an error.
	Delete(ctx context.Context, key string) error
}

// Limits of the host services, the same for plugins and Lua scripts.
const (
	KVMaxKey      = 512                        // bytes in a key
	KVMaxValue    = 64 << 10                   // bytes in a value
	KVMaxTTL      = 100 * 365 * 24 * time.Hour // longest expiry
	LogMaxFields  = 32                         // fields kept per log line
	LogMaxValue   = 1024                       // bytes kept of a field's value
	LogMaxMessage = 2048                       // bytes kept of a message
)

// MX is one mail exchanger.
type MX struct {
	Host       string
	Preference uint16
}

// Delivery is a message handed to a plugin transport.
type Delivery struct {
	ID         string
	Txn        Txn
	Recipients []Recipient // this attempt's recipients
	Domain     string
	Transport  string // which of the plugin's transports
	Via        string
	Content    []byte // the whole message (trace header + content)
}

// DeliveryResult is a plugin transport's answer for one recipient.
type DeliveryResult struct {
	Outcome   Outcome
	Code      int
	Enhanced  EnhancedCode
	Text      string
	RemoteMTA string
}

// Outcome of one recipient's delivery.
type Outcome uint8

const (
	Temporary Outcome = iota // try again later
	Delivered
	Permanent // bounce
)

// Transport is implemented by plugins that deliver mail (Info.Transports).
// It returns one result per recipient, in order.
type Transport interface {
	Deliver(ctx context.Context, d *Delivery) ([]DeliveryResult, error)
}

// Errors carried across the process boundary; test with errors.Is.
var (
	ErrUnavailable = errors.New("sdk: plugin unavailable")    // crashed, not started, restarting
	ErrProtocol    = errors.New("sdk: protocol mismatch")     // no common protocol version
	ErrNotHandled  = errors.New("sdk: stage not handled")     // the plugin does not implement that stage
	ErrInternal    = errors.New("sdk: plugin internal error") // a panic in the plugin, or a broken message
)

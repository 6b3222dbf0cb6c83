// Package config owns gateway.hcl: the typed Config every other part reads,
// the defaults (all in defaults.go), and loading with HCL diagnostics that
// name file:line:column for unknown keys, wrong types and bad values.
package config

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/mailgate/gateway/sdk"
)

// Config is the whole gateway configuration after defaults and validation.
type Config struct {
	Hostname string // the name in the greeting, EHLO reply and Received headers
	DataDir  string // the spool and other state live here; a relative data_dir is resolved against the config file's folder

	Log Log

	Listeners []Listener

	Domains []string // mail for these domains is accepted from anyone (lower case)
	Relay   Relay
	Auth    Auth

	Delivery Delivery
	Admin    Admin
	Inject   Inject

	// Authentication is the authentication block: SPF, DKIM, DMARC and ARC
	// checks of mail from clients neither in relay.networks nor
	// authenticated. nil: no block, no checks.
	Authentication *Authentication `json:",omitempty"`

	// Pipeline is the order the hook handlers run in, at every stage: each
	// entry names a handler block as "lua.<name>" or "plugin.<name>".
	// Every handler block appears exactly once. Without a pipeline setting
	// it is the order of the blocks in the file.
	Pipeline []string
	// Lua is the lua "name" { … } blocks, in file order.
	Lua []LuaHook
	// Plugins is the plugin "name" { … } blocks, in file order.
	Plugins []PluginHook

	// DKIM is the dkim "domain" { … } blocks (outbound signing), in file
	// order.
	DKIM []DKIM

	// Cluster is the cluster block: the nodes share their hooks'
	// key-value state on NATS JetStream. nil: no block, one node.
	Cluster *Cluster `json:",omitempty"`

	// ShutdownTimeout is how long a graceful stop lets sessions finish
	// before answering 421 to their next command.
	ShutdownTimeout time.Duration

	// File is the path the config was loaded from ("" if from bytes).
	File string
}

// MaxHops is the hop limit of queued mail, for the delivery engine's loop
// check: the largest max_hops of the listeners, since a message any of them
// accepted must not be taken for a loop later (the default without
// listeners).
func (c *Config) MaxHops() int {
	n := 0
	for _, l := range c.Listeners {
		n = max(n, l.MaxHops)
	}
	if n == 0 {
		n = defaultMaxHops
	}
	return n
}

// Log configures structured logging.
type Log struct {
	Level  string // debug | info | warn | error
	Format string // text | json
}

// Listener is one SMTP listener block: listener "name" { … }.
type Listener struct {
	Name    string
	Address string // host:port

	MaxMessageSize      int64 // bytes; SIZE is declared with this value
	MaxRecipients       int   // per transaction; more get 452 4.5.3
	MaxLineLength       int   // command line, bytes including CRLF; longer gets 500 5.5.2
	MaxHeaderSize       int64 // bytes of the header section of a message
	MaxConnections      int   // concurrent sessions on this listener
	MaxConnectionsPerIP int   // concurrent sessions from one client IP
	MaxErrors           int   // protocol errors before the session is closed with 421

	// BareLineEndings is what happens to a message containing a bare CR or LF:
	// "reject" (550 5.5.2, the default) or "fix" (convert them to CRLF).
	// Neither ever ends the message early (SMTP smuggling).
	BareLineEndings string

	TLS          *TLS // nil: no STARTTLS
	AuthRequired bool // submission-style: MAIL needs AUTH first (530 5.7.0)
	AuthInsecure bool // offer AUTH without TLS (off by default)

	// VerifySenderDomain rejects MAIL FROM when the sender's domain has no
	// MX, A or AAAA record (550 5.1.8; 450 4.1.8 when the look-up fails).
	// Off by default.
	VerifySenderDomain bool
	// MaxHops is the most Received header fields a message may arrive with;
	// more is taken for a mail loop (554 5.4.6). Default 50.
	MaxHops int

	// ProxyProtocol lists the load balancers (networks) whose connections
	// start with a PROXY protocol header, v1 or v2 (HAProxy's spec): the
	// address it names is the client's for every stage. A connection from
	// one of them without a valid header, or a header from anyone else,
	// is closed. Default: none.
	ProxyProtocol []netip.Prefix `json:",omitempty"`

	Timeouts Timeouts
}

// TLS is a listener's certificate for STARTTLS, or for TLS from the first
// byte (Implicit, RFC 8314 §3.3).
type TLS struct {
	Cert string // PEM file; a relative path is resolved against the config file's folder
	Key  string // PEM file; likewise
	// Implicit: the listener speaks TLS from the first byte (port 465),
	// and offers no STARTTLS. Default false.
	Implicit bool `json:",omitempty"`
	// ECDSACert and ECDSAKey (PEM files, both or neither) are an ECDSA
	// certificate offered before Cert to clients that take one, as
	// Postfix's smtpd_tls_eccert_file: its handshake costs the server
	// half an RSA one's. Cert stays for clients that take only RSA.
	ECDSACert string `json:",omitempty"`
	ECDSAKey  string `json:",omitempty"`
}

// Timeouts are the server-side timeouts of RFC 5321 §4.5.3.2.
type Timeouts struct {
	Command   time.Duration // waiting for the next command (default 5m)
	DataBlock time.Duration // between reads of message content (default 3m)
	Message   time.Duration // a whole DATA or BDAT exchange (default 10m)
}

// Relay decides who may send to domains not in Domains.
type Relay struct {
	Networks      []netip.Prefix // clients here may relay
	Authenticated bool           // authenticated clients may relay (default true)
}

// Auth is the built-in credential store used until hooks take over, and
// the guard against password guessing, shared by every listener.
type Auth struct {
	Users map[string]string // user name -> bcrypt hash

	// FailureLimit is how many failed AUTH attempts one client (an IPv4
	// address, an IPv6 /64) may make within Lockout; the one that reaches
	// it locks the client out for Lockout: every AUTH gets 454 4.7.0,
	// even with the right password. 0 = no limit. Default 5.
	FailureLimit int
	// Lockout is the window failures are counted in and the length of a
	// lockout. Default 15m.
	Lockout time.Duration
	// FailureDelay is how long the reply to a failed AUTH waits, for
	// every failure of a client within Lockout but the first. Default 2s.
	FailureDelay time.Duration
}

// Delivery configures the delivery engine (core/delivery).
type Delivery struct {
	Routes []Route

	Resolver []string // DNS servers "host:port" (resolver = "127.0.0.1:5353" or a list); empty = /etc/resolv.conf
	Port     int      // SMTP port of MX hosts; default 25
	TLS      string   // default STARTTLS policy: "none" | "opportunistic" (default) | "encrypt" | "verify" ("require" = "verify")
	// Chunking is when a message goes with BDAT (RFC 3030) to a next hop
	// that offers CHUNKING: "binarymime" (default: only BODY=BINARYMIME
	// messages, which cannot go otherwise) | "always".
	Chunking string

	MaxConnections          int // outbound connections in total; default 100
	MaxConnectionsPerDomain int // outbound connections per destination; default 20

	Retry        []time.Duration // waits before retry 1, 2, …; the last repeats. Default 1m, 5m, 15m, 30m, 1h
	MaxLifetime  time.Duration   // a recipient still failing after this is bounced; default 5d
	DelayWarning time.Duration   // send one delay DSN after this; default 4h; 0 = never

	// Postmaster receives bounces that could not be delivered to their
	// sender (double bounces); "" = log them and drop them.
	Postmaster string

	ConnectTimeout time.Duration // TCP connect to a next hop; default 30s
	CommandTimeout time.Duration // each SMTP reply from a next hop; default 5m

	// DeadHostTTL is how long an address whose connect failed is not
	// dialled again (mail for it is deferred at once); default 30s, 0 = off.
	// ETRN and `gateway queue retry` forget it sooner.
	DeadHostTTL time.Duration

	// TLSSessions is how many TLS sessions the SMTP client keeps per TLS
	// level, for new connections to resume (Postfix's
	// smtp_tls_session_cache_database); default 1000, 0 = none, at most
	// 100,000 (each takes up to 16 KiB).
	TLSSessions int

	// ProxyAddresses are addresses a NAT or load balancer forwards to this
	// gateway (Postfix's proxy_interfaces): an MX host at one of them is
	// this gateway, as one at a listener's address is.
	ProxyAddresses []netip.Addr

	// HoldDomains are recipient domains whose mail is queued and not
	// attempted (Postfix's defer_transports): lower-case names, or
	// "*.name" for every subdomain of name (not name itself). ETRN or
	// `gateway queue retry -domain D` delivers D's queued mail once; held
	// mail still expires after MaxLifetime (see HoldNoExpiry). A reload
	// changes the set.
	HoldDomains []string
	// HoldNoExpiry (hold_expires = false) keeps held mail past
	// MaxLifetime for as long as its domain is held; once released, a
	// message older than MaxLifetime gets one attempt and is bounced if
	// that fails temporarily (as Postfix's hold queue does).
	HoldNoExpiry bool

	// MTASTS honours the MTA-STS policies (RFC 8461) that recipient
	// domains publish: under "enforce", mail goes only to the policy's MX
	// hosts over TLS with a certificate valid for the MX name. Default true.
	MTASTS bool
	// DANE honours the TLSA records (RFC 7672) of MX hosts when the
	// resolver vouches for them with the AD bit: TLS is then mandatory and
	// the certificate must match a record. Default true. The AD bit is
	// trusted as it comes, so Resolver must be a DNSSEC-validating resolver
	// on a trusted path (a local one), as with Postfix's
	// smtp_dns_support_level = dnssec.
	DANE bool
	// TLSCAFile is a PEM file of trust anchors added to the system roots
	// for verified TLS: the "verify" level, MTA-STS hosts and policy
	// servers, TLS-RPT report servers. "" = the system roots only.
	TLSCAFile string
	// TLSReports, when set, sends the TLS-RPT aggregate reports (RFC 8460)
	// of each day to the domains that ask for them; nil = off.
	TLSReports *TLSReports
}

// TLSReports is delivery's tls_reports { from organization } block.
type TLSReports struct {
	From         string // the reports' sender address (and the contact-info)
	Organization string // organization-name in the reports
}

// Route is a static route: route "domain" { via = "host:port" }.
type Route struct {
	Domain    string // lower case; "*" matches every domain
	Via       string // host:port; "" = MX look-up (smtp) — required for lmtp over TCP
	Transport string // "smtp" (default), "lmtp", "maildir", or a transport a plugin provides (checked when the plugins start)
	Path      string // maildir: the Maildir root; lmtp: a unix socket path instead of via
	TLS       string // STARTTLS policy for this route; "" = Delivery.TLS
	// Auth is the credentials an smtp route logs in to its next hop with
	// (a smarthost); nil: no AUTH.
	Auth *RouteAuth
	// TransportRange is where the transport setting is (the route's label
	// without one), for a diagnostic found when the plugins start.
	TransportRange Range
}

// RouteAuth is a route's auth { username  password_file } block. The
// password is read when the config is loaded (and at every reload).
type RouteAuth struct {
	Username string
	Password string
}

// Admin is the loopback admin API.
type Admin struct {
	Address string // host:port; "" disables it
}

// Inject is the HTTP injection endpoint (POST /v1/messages):
// inject { address = "127.0.0.1:8026"  token_file = "inject.token" }.
type Inject struct {
	Address string // host:port; "" disables it
	Token   string // the bearer token clients send, from token or token_file
}

// LuaHook is a Lua script in the hook pipeline: lua "name" { … }.
type LuaHook struct {
	Name    string        // the block's label; the pipeline calls it "lua.<name>"
	Path    string        // the script; a relative path is resolved against the config file's folder
	Timeout time.Duration // deadline of each call (default 1s)
	OnError string        // when a call errors, panics or times out: "defer" (default), "continue" or "reject"
	// MaxMemory is the most bytes one Lua state of the script may take
	// (default 64MB, at least 1MB): a call that would pass it fails (on_error).
	MaxMemory int64

	// Params is the params = { … } object, handed to the script: values
	// are string, int64 (whole numbers), float64, bool, nil, []any and
	// map[string]any. Nil when absent.
	Params map[string]any

	Match Match // which requests the script is called for; the zero Match is all of them
}

// PipelineName is the name of the hook in the pipeline: "lua.<name>".
func (h LuaHook) PipelineName() string { return HookLua + "." + h.Name }

// PluginHook is an out-of-process plugin in the hook pipeline:
// plugin "name" { … }. The gateway starts Path with hashicorp/go-plugin
// (core/pluginhost), checks Config against the schema the plugin reports,
// and calls it at the stages it declares.
type PluginHook struct {
	Name    string        // the block's label; the pipeline calls it "plugin.<name>"
	Path    string        // the executable; a relative path is resolved against the config file's folder
	SHA256  string        // lower-case hex SHA-256 the executable must have; "" = not checked
	Timeout time.Duration // deadline of each call (default 2s)
	OnError string        // when a call errors, times out or the plugin is down: "defer" (default), "continue" or "reject"

	Match Match // which requests the plugin is called for; the zero Match is all of them

	// Config is the config { … } block's attributes, converted like a lua
	// block's params (string, int64, float64, bool, []any,
	// map[string]any); nil without a config block. The plugin's schema
	// checks it when the plugin starts, not when the file loads.
	Config map[string]any
	// ConfigRange is where the config block starts (the plugin block
	// itself when it has none), and ConfigLines the line of each setting
	// in it: the places diagnostics about the plugin's settings name.
	ConfigRange Range
	ConfigLines map[string]int
	// SHA256Range is where the sha256 setting is, for the diagnostic of a
	// binary whose digest differs (known only when the plugin starts).
	SHA256Range Range
}

// PipelineName is the name of the hook in the pipeline: "plugin.<name>".
func (h PluginHook) PipelineName() string { return HookPlugin + "." + h.Name }

// Range is a place in a configuration file, for diagnostics found after
// loading (a plugin's schema is known only once it runs).
type Range struct {
	Filename string
	Line     int
}

// String returns "file:line".
func (r Range) String() string { return fmt.Sprintf("%s:%d", r.Filename, r.Line) }

// The kinds of hook block, the prefixes of pipeline entries.
const (
	HookLua    = "lua"
	HookPlugin = "plugin"
)

// Match is a hook block's match { … }: the hook is called only for the
// requests that meet every condition given. An empty list or a nil
// Authenticated sets no condition.
type Match struct {
	Stages  []sdk.Stage    // stage = ["rcpt", "data"]
	Clients []netip.Prefix // client = ["10.0.0.0/8"]: the client's IP is in one of them

	// SenderDomains and RecipientDomains are lower-case domain names, or
	// "*.domain", which matches every subdomain of domain (not domain
	// itself). sender_domain is the envelope sender's domain (never the
	// null sender's). recipient_domain is the domain of the recipient the
	// request is about (at rcpt, predelivery and the delivery
	// notifications), or else of any recipient of the transaction so far.
	SenderDomains    []string
	RecipientDomains []string

	Authenticated *bool // true: only authenticated sessions; false: only others
	// Commands limits the command stage to these verbs (upper case),
	// command = ["RCPT", "EXPN"]: a handler that polices a few commands is
	// not called (nor, for a plugin, asked over gRPC) for every other one.
	// Other stages are not affected.
	Commands []string
}

// IsZero reports whether m sets no condition.
func (m Match) IsZero() bool {
	return len(m.Stages) == 0 && len(m.Clients) == 0 && len(m.SenderDomains) == 0 &&
		len(m.RecipientDomains) == 0 && m.Authenticated == nil && len(m.Commands) == 0
}

// Authentication is authentication { … }: how mail from outside (a client
// neither in relay.networks nor authenticated) is checked at the data
// stage, before the hooks run.
type Authentication struct {
	SPF  bool // RFC 7208 for MAIL FROM (HELO for <>); default true
	DKIM bool // verify every DKIM-Signature (RFC 6376, RFC 8463); default true
	// DMARC is "off", "report" (results in the header only, the default)
	// or "enforce" (p=reject refused with 550 5.7.1, p=quarantine marked
	// with X-Gateway-Quarantine, a DNS failure that leaves the outcome open
	// deferred with 451 4.7.5).
	DMARC string
	ARC   bool // verify an incoming ARC chain (RFC 8617); default false
	// ARCSeal names the dkim block whose key seals the ARC sets of mail
	// we forward; "" seals nothing.
	ARCSeal string
	// AuthservID is the authserv-id of our Authentication-Results fields
	// (RFC 8601); default the hostname.
	AuthservID string
}

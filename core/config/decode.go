package config

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/gocty"
)

// decoder converts the raw structs of schema.go into a Config. It collects
// every problem as a diagnostic at the range of the value at fault, and
// keeps going, so that one run reports them all.
type decoder struct {
	dir       string                 // the config file's folder, for relative paths
	hostname  func() (string, error) // os.Hostname, for the default hostname
	skipFiles bool                   // LoadSettings: paths are resolved, files not opened
	diags     hcl.Diagnostics
}

// config converts the whole file. body is the range of the file's start,
// for diagnostics about what is missing.
func (d *decoder) config(r *rawFile, body hcl.Range) Config {
	c := defaultConfig()
	if !d.domain("hostname", r.Hostname, &c.Hostname) {
		c.Hostname = defaultHostname(d.hostname())
	}
	if d.str("data_dir", r.DataDir, &c.DataDir) && c.DataDir == "" {
		d.errorf(r.DataDir.Range(), "Invalid value", "data_dir is empty.")
	}
	c.DataDir = d.resolve(c.DataDir)
	d.duration("shutdown_timeout", r.ShutdownTimeout, &c.ShutdownTimeout, true)
	c.Domains = d.domains("domains", r.Domains)

	if r.Log != nil {
		d.enum("level", r.Log.Level, &c.Log.Level, logLevels())
		d.enum("format", r.Log.Format, &c.Log.Format, logFormats())
	}
	var listening map[string]*rawListener
	c.Listeners, listening = d.listeners(r.Listeners, body)
	if r.Relay != nil {
		c.Relay.Networks = d.networks("networks", r.Relay.Networks)
		d.boolean("authenticated", r.Relay.Authenticated, &c.Relay.Authenticated)
	}
	if r.Auth != nil {
		d.auth(r.Auth, &c.Auth)
	}
	if r.Delivery != nil {
		c.Delivery = d.delivery(r.Delivery)
	}
	if r.Admin != nil {
		if d.required("address", r.Admin.Address, r.Admin.DefRange) &&
			d.address("address", r.Admin.Address, &c.Admin.Address, true) && !loopbackHost(c.Admin.Address) {
			d.errorf(r.Admin.Address.Range(), "Invalid address",
				"address = %q: the admin API has no authentication, so it listens on loopback only (127.0.0.1, ::1 or localhost).", c.Admin.Address)
		}
		if first, dup := listening[listenKey(c.Admin.Address)]; dup && c.Admin.Address != "" {
			d.errorf(r.Admin.Address.Range(), "Duplicate listener address",
				"Listener %q already uses this address, at %s.", first.Name, line(first.Address.Range()))
		}
	}
	if r.Inject != nil {
		c.Inject = d.inject(r.Inject)
		if first, dup := listening[listenKey(c.Inject.Address)]; dup && c.Inject.Address != "" {
			d.errorf(r.Inject.Address.Range(), "Duplicate listener address",
				"Listener %q already uses this address, at %s.", first.Name, line(first.Address.Range()))
		}
		if c.Inject.Address != "" && c.Inject.Address == c.Admin.Address {
			d.errorf(r.Inject.Address.Range(), "Duplicate listener address", "The admin API already uses this address.")
		}
	}
	if r.AuthCheck != nil {
		c.Authentication = d.authentication(r.AuthCheck, c.Hostname)
	}
	d.hooks(r, &c)
	c.DKIM = d.dkimBlocks(r.DKIM)
	c.Cluster = d.cluster(r.Cluster)
	if c.Authentication != nil && c.Authentication.ARCSeal != "" {
		d.arcSealKey(r.AuthCheck.ARCSeal.Range(), c.Authentication.ARCSeal, c.DKIM)
	}
	return c
}

// minTokenLen is the shortest bearer token the injection endpoint accepts.
const minTokenLen = 16

// inject decodes the injection endpoint's block: an address and exactly
// one of token and token_file (whose content, trimmed, is the token).
func (d *decoder) inject(r *rawInject) Inject {
	var in Inject
	if d.required("address", r.Address, r.DefRange) {
		d.address("address", r.Address, &in.Address, true)
	}
	var ok bool
	if in.Token, ok = d.secret("inject", "token", r.Token, r.TokenFile, r.DefRange); !ok {
		return in
	}
	if in.Token != "" && len(in.Token) < minTokenLen {
		rng := r.TokenFile.Range()
		if present(r.Token) {
			rng = r.Token.Range()
		}
		d.errorf(rng, "Invalid value", "The token must be at least %d characters.", minTokenLen)
	}
	return in
}

// secret decodes one of name (the value) and name_file (a file whose
// content, trimmed, is the value), exactly one of which must be given in
// the block (named block) at def. ok is false when an error was reported,
// or when the file was not read (LoadSettings).
func (d *decoder) secret(block, name string, value, file hcl.Expression, def hcl.Range) (secret string, ok bool) {
	hasValue, hasFile := present(value), present(file)
	switch {
	case hasValue == hasFile:
		d.errorf(def, "Invalid "+block+" block", "Give exactly one of %s and %s_file.", name, name)
		return "", false
	case hasValue:
		return secret, d.str(name, value, &secret)
	}
	var path string
	if !d.file(name+"_file", file, &path) || d.skipFiles {
		return "", false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		d.errorf(file.Range(), "Unreadable file", "%s_file: %s.", name, err)
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

// validListenerName reports whether a listener's label is fit to name it in
// logs and metrics: letters, digits, '.', '_' and '-', starting with a
// letter or digit.
func validListenerName(s string) bool {
	for i, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return s != ""
}

// validTransportName reports whether s can name a route's transport:
// lower-case letters, digits, '_' and '-', starting with a letter.
func validTransportName(s string) bool {
	for i, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z':
		case i > 0 && (c >= '0' && c <= '9' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return s != ""
}

// listeners converts the listener blocks: at least one, names and
// addresses unique. Port 0 (a free port, in tests) may be used by several.
// It also returns the listeners by address (listenKey), port 0 excepted.
func (d *decoder) listeners(rs []rawListener, body hcl.Range) ([]Listener, map[string]*rawListener) {
	if len(rs) == 0 {
		d.errorf(body, "Missing listener block",
			`At least one listener "name" { address = "host:port" } block is required.`)
		return nil, nil
	}
	var (
		ls    []Listener
		names = map[string]hcl.Range{}
		addrs = map[string]*rawListener{} // by listenKey
	)
	for i := range rs {
		r := &rs[i]
		l := d.listener(r)
		if first, dup := names[r.Name]; dup {
			d.errorf(r.NameRange, "Duplicate listener",
				"A listener named %q is already defined at %s.", r.Name, line(first))
		} else {
			names[r.Name] = r.DefRange
		}
		if key := listenKey(l.Address); l.Address != "" && !strings.HasSuffix(key, ":0") {
			if first, dup := addrs[key]; dup {
				d.errorf(r.Address.Range(), "Duplicate listener address",
					"Listener %q already uses this address, at %s.", first.Name, line(first.Address.Range()))
			} else {
				addrs[key] = r
			}
		}
		ls = append(ls, l)
	}
	return ls, addrs
}

func (d *decoder) listener(r *rawListener) Listener {
	l := DefaultListener(r.Name)
	if !validListenerName(r.Name) {
		d.errorf(r.NameRange, "Invalid listener name",
			"A listener name has letters, digits, '.', '_' and '-', and starts with a letter or digit; got %q.", r.Name)
	}
	if d.required("address", r.Address, r.DefRange) {
		d.address("address", r.Address, &l.Address, true)
	}
	d.size("max_message_size", r.MaxMessageSize, &l.MaxMessageSize)
	d.integer("max_recipients", r.MaxRecipients, &l.MaxRecipients, 1)
	d.integer("max_line_length", r.MaxLineLength, &l.MaxLineLength, minMaxLineLength)
	d.size("max_header_size", r.MaxHeaderSize, &l.MaxHeaderSize)
	d.integer("max_connections", r.MaxConnections, &l.MaxConnections, 1)
	d.integer("max_connections_per_ip", r.MaxConnectionsPerIP, &l.MaxConnectionsPerIP, 1)
	d.integer("max_errors", r.MaxErrors, &l.MaxErrors, 1)
	d.enum("bare_line_endings", r.BareLineEndings, &l.BareLineEndings, bareLineEndings())
	d.boolean("auth_required", r.AuthRequired, &l.AuthRequired)
	d.boolean("auth_insecure", r.AuthInsecure, &l.AuthInsecure)
	d.boolean("verify_sender_domain", r.VerifySenderDomain, &l.VerifySenderDomain)
	d.integer("max_hops", r.MaxHops, &l.MaxHops, 1)
	l.ProxyProtocol = d.proxies("proxy_protocol", r.ProxyProtocol)
	if r.TLS != nil {
		l.TLS = &TLS{}
		if d.required("cert", r.TLS.Cert, r.TLS.DefRange) {
			d.file("cert", r.TLS.Cert, &l.TLS.Cert)
		}
		if d.required("key", r.TLS.Key, r.TLS.DefRange) {
			d.file("key", r.TLS.Key, &l.TLS.Key)
		}
		d.boolean("implicit", r.TLS.Implicit, &l.TLS.Implicit)
		if present(r.TLS.ECDSACert) || present(r.TLS.ECDSAKey) {
			if d.required("ecdsa_cert", r.TLS.ECDSACert, r.TLS.DefRange) {
				d.file("ecdsa_cert", r.TLS.ECDSACert, &l.TLS.ECDSACert)
			}
			if d.required("ecdsa_key", r.TLS.ECDSAKey, r.TLS.DefRange) {
				d.file("ecdsa_key", r.TLS.ECDSAKey, &l.TLS.ECDSAKey)
			}
		}
		d.keyPairs(r.TLS, l.TLS)
	}
	if t := r.Timeouts; t != nil {
		d.duration("command", t.Command, &l.Timeouts.Command, false)
		d.duration("data_block", t.DataBlock, &l.Timeouts.DataBlock, false)
		d.duration("message", t.Message, &l.Timeouts.Message, false)
	}
	return l
}

// line names the file and line where r starts, for "defined at" details.
func line(r hcl.Range) string {
	return fmt.Sprintf("%s:%d", r.Filename, r.Start.Line)
}

// delivery converts delivery { … } over the defaults.
func (d *decoder) delivery(r *rawDelivery) Delivery {
	dl := DefaultDelivery()
	dl.Resolver = d.resolvers("resolver", r.Resolver)
	d.port("port", r.Port, &dl.Port)
	d.enum("tls", r.TLS, &dl.TLS, deliveryTLS())
	d.enum("chunking", r.Chunking, &dl.Chunking, deliveryChunking())
	d.integer("max_connections", r.MaxConnections, &dl.MaxConnections, 1)
	d.integer("max_connections_per_domain", r.MaxConnectionsPerDomain, &dl.MaxConnectionsPerDomain, 1)
	d.durations("retry", r.Retry, &dl.Retry)
	d.duration("max_lifetime", r.MaxLifetime, &dl.MaxLifetime, false)
	d.duration("delay_warning", r.DelayWarning, &dl.DelayWarning, true)
	d.mailbox("postmaster", r.Postmaster, &dl.Postmaster)
	d.duration("connect_timeout", r.ConnectTimeout, &dl.ConnectTimeout, false)
	d.duration("command_timeout", r.CommandTimeout, &dl.CommandTimeout, false)
	d.duration("dead_host_ttl", r.DeadHostTTL, &dl.DeadHostTTL, true)
	d.integerIn("tls_sessions", r.TLSSessions, &dl.TLSSessions, 0, maxTLSSessions)
	dl.ProxyAddresses = d.ipList("proxy_addresses", r.ProxyAddresses)
	dl.HoldDomains = d.domainPatterns("hold_domains", r.HoldDomains)
	holdExpires := true
	d.boolean("hold_expires", r.HoldExpires, &holdExpires)
	dl.HoldNoExpiry = !holdExpires
	d.boolean("mta_sts", r.MTASTS, &dl.MTASTS)
	d.boolean("dane", r.DANE, &dl.DANE)
	if r.TLSCAFile != nil {
		d.file("tls_ca_file", r.TLSCAFile, &dl.TLSCAFile)
	}
	dl.TLSReports = d.tlsReports(r.TLSReports)
	dl.Routes = d.routes(r.Routes)
	return dl
}

// tlsReports converts tls_reports { from organization }; nil when absent.
// organization defaults to the sender's domain.
func (d *decoder) tlsReports(r *rawTLSReports) *TLSReports {
	if r == nil {
		return nil
	}
	t := &TLSReports{}
	if d.required("from", r.From, r.DefRange) {
		d.mailbox("from", r.From, &t.From)
	}
	if r.Organization != nil {
		d.str("organization", r.Organization, &t.Organization)
	}
	if t.Organization == "" {
		t.Organization = t.From[strings.LastIndexByte(t.From, '@')+1:]
	}
	return t
}

// ipList decodes a list of IP addresses, each reported at its own
// position when it is not one.
func (d *decoder) ipList(name string, expr hcl.Expression) []netip.Addr {
	list, ok := value[[]string](d, name, expr)
	if !ok {
		return nil
	}
	ranges := elementRanges(expr, len(list))
	var out []netip.Addr
	for i, s := range list {
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.Zone() != "" {
			d.errorf(ranges[i], "Invalid address", "%s: %q is not an IP address.", name, s)
			continue
		}
		out = append(out, ip.Unmap())
	}
	return out
}

// resolvers converts resolver: one address or a list of them (see
// resolverAddress), duplicates dropped.
func (d *decoder) resolvers(name string, expr hcl.Expression) []string {
	if expr == nil {
		return nil
	}
	val, diags := expr.Value(nil)
	if diags.HasErrors() {
		d.diags = append(d.diags, diags...)
		return nil
	}
	var (
		list   []string
		ranges []hcl.Range
	)
	if val.Type().IsPrimitiveType() { // a single address
		s, ok := value[string](d, name, expr)
		if !ok {
			return nil
		}
		list, ranges = []string{s}, []hcl.Range{expr.Range()}
	} else {
		if ty := val.Type(); !val.IsNull() && !ty.IsListType() && !ty.IsTupleType() && !ty.IsSetType() {
			d.errorf(expr.Range(), "Unsuitable value type", `%s: want an address string or a list of them.`, name)
			return nil
		}
		var ok bool
		if list, ok = value[[]string](d, name, expr); !ok {
			return nil
		}
		ranges = elementRanges(expr, len(list))
	}
	var out []string
	for i, s := range list {
		addr, err := resolverAddress(s)
		if err != nil {
			d.errorf(ranges[i], "Invalid address", "%s: %q: %s.", name, s, err)
			continue
		}
		if !slices.Contains(out, addr) {
			out = append(out, addr)
		}
	}
	return out
}

func (d *decoder) routes(rs []rawRoute) []Route {
	var (
		routes []Route
		seen   = map[string]hcl.Range{}
	)
	for _, r := range rs {
		domain := r.Domain
		if domain != "*" {
			var err error
			if domain, err = normalizeDomain(r.Domain); err != nil {
				d.errorf(r.DomainRange, "Invalid domain name",
					`A route's label is a domain name or "*"; %q is not: %s.`, r.Domain, err)
				continue
			}
		}
		if first, dup := seen[domain]; dup {
			d.errorf(r.DomainRange, "Duplicate route",
				"A route for %q is already defined at %s.", domain, line(first))
			continue
		}
		seen[domain] = r.DomainRange
		rt := defaultRoute(domain)
		d.address("via", r.Via, &rt.Via, false)
		transportOK := !present(r.Transport)
		if d.str("transport", r.Transport, &rt.Transport) {
			if transportOK = validTransportName(rt.Transport); !transportOK {
				d.errorf(r.Transport.Range(), "Invalid value",
					"transport = %q is not a transport name: lower-case letters, digits, '_' and '-'.", rt.Transport)
			}
		}
		if d.str("path", r.Path, &rt.Path) {
			if rt.Path == "" {
				d.errorf(r.Path.Range(), "Invalid value", "path is empty.")
			}
			rt.Path = d.resolve(rt.Path)
		}
		d.enum("tls", r.TLS, &rt.TLS, deliveryTLS())
		if r.Auth != nil {
			rt.Auth = d.routeAuth(r.Auth)
			if rt.Transport == transportSMTP {
				d.authRouteTLS(&r, &rt)
			}
		}
		if transportOK {
			d.transportArgs(&r, rt.Transport)
		}
		at := r.DomainRange
		if present(r.Transport) {
			at = r.Transport.Range()
		}
		rt.TransportRange = Range{Filename: at.Filename, Line: at.Start.Line}
		routes = append(routes, rt)
	}
	return routes
}

// routeAuth decodes a route's auth block: a username and exactly one of
// password and password_file.
func (d *decoder) routeAuth(r *rawRouteAuth) *RouteAuth {
	var a RouteAuth
	if d.required("username", r.Username, r.DefRange) && d.str("username", r.Username, &a.Username) && a.Username == "" {
		d.errorf(r.Username.Range(), "Invalid value", "username is empty.")
	}
	if pass, ok := d.secret("auth", "password", r.Password, r.PasswordFile, r.DefRange); ok && pass == "" {
		at := r.PasswordFile.Range()
		if present(r.Password) {
			at = r.Password.Range()
		}
		d.errorf(at, "Invalid value", "The password is empty.")
	} else {
		a.Password = pass
	}
	return &a
}

// authRouteTLS checks the next hop and TLS policy of a route with
// credentials: they go to its via only (never to an MX found by look-up),
// over verified TLS unless the route itself says tls = "none". So its tls
// defaults to "require", not to delivery's tls, and "opportunistic" (any
// certificate, or none) is refused.
func (d *decoder) authRouteTLS(r *rawRoute, rt *Route) {
	if !present(r.Via) {
		d.errorf(r.Auth.DefRange, "Missing required argument",
			"A route with auth needs via, the smarthost its credentials are for; without it they would go to every recipient domain's MX.")
	}
	switch rt.TLS {
	case "":
		rt.TLS = "require"
	case defaultDeliveryTLS, "encrypt":
		d.errorf(r.TLS.Range(), "Invalid value",
			`A route with auth sends its credentials over verified TLS: tls = "require" or "verify" (the default here), or "none" to allow clear text; %q would send them to any certificate.`, rt.TLS)
	}
}

// transportArgs checks that a route has the arguments its transport needs
// and none it would ignore. Plugin transports check their own.
func (d *decoder) transportArgs(r *rawRoute, transport string) {
	if r.Auth != nil && transport != transportSMTP {
		d.errorf(r.Auth.DefRange, "Unsupported block", `auth is for transport = "smtp" (a smarthost); this route's transport is %q.`, transport)
	}
	switch transport {
	case transportSMTP:
		if present(r.Path) {
			d.errorf(r.Path.Range(), "Unsupported argument",
				`path is for transport = "maildir" or "lmtp"; an smtp route takes via, or none for an MX look-up.`)
		}
	case transportLMTP:
		switch {
		case !present(r.Via) && !present(r.Path):
			d.errorf(r.Transport.Range(), "Missing required argument",
				`transport = "lmtp" needs via (host:port) or path (a unix socket).`)
		case present(r.Via) && present(r.Path):
			d.errorf(r.Path.Range(), "Conflicting arguments",
				`transport = "lmtp" takes via (host:port) or path (a unix socket), not both.`)
		}
	case transportMaildir:
		if !present(r.Path) {
			d.errorf(r.Transport.Range(), "Missing required argument",
				`transport = "maildir" needs path, the Maildir root folder.`)
		}
		if present(r.Via) {
			d.errorf(r.Via.Range(), "Unsupported argument", `via is not used by transport = "maildir".`)
		}
		if present(r.TLS) {
			d.errorf(r.TLS.Range(), "Unsupported argument", `tls is not used by transport = "maildir".`)
		}
	}
}

// present reports whether an optional argument is given a non-null value
// (or one whose value is in error: that is reported where it is decoded).
func present(expr hcl.Expression) bool {
	if expr == nil {
		return false
	}
	v, diags := expr.Value(nil)
	return diags.HasErrors() || !v.IsNull()
}

// auth decodes the auth block: the users and the limits on guessing.
func (d *decoder) auth(r *rawAuth, a *Auth) {
	a.Users = d.users(r.Users)
	d.integer("auth_failure_limit", r.FailureLimit, &a.FailureLimit, 0)
	d.duration("auth_lockout", r.Lockout, &a.Lockout, false)
	if d.duration("auth_failure_delay", r.FailureDelay, &a.FailureDelay, true) && a.FailureDelay > maxAuthFailureDelay {
		d.errorf(r.FailureDelay.Range(), "Invalid duration",
			"auth_failure_delay must be at most %s; got %s.", maxAuthFailureDelay, a.FailureDelay)
		a.FailureDelay = maxAuthFailureDelay
	}
}

// bcryptPrefixes are the versions of bcrypt hashes the password table takes.
func bcryptPrefixes() []string { return []string{"$2a$", "$2b$", "$2y$"} }

// users converts auth { users = { name = "bcrypt hash" } }. Only the hash's
// version prefix is checked here: a malformed hash fails at login.
func (d *decoder) users(expr hcl.Expression) map[string]string {
	users, ok := value[map[string]string](d, "users", expr)
	if !ok {
		return nil
	}
	ranges := map[string]hcl.Range{}
	if pairs, diags := hcl.ExprMap(expr); !diags.HasErrors() {
		for _, p := range pairs {
			k, diags := p.Key.Value(nil)
			if diags.HasErrors() || !k.IsKnown() || k.IsNull() || k.Type() != cty.String {
				continue
			}
			name := k.AsString()
			if first, dup := ranges[name]; dup {
				d.errorf(p.Key.Range(), "Duplicate user",
					"User %q is already defined at %s.", name, line(first))
				continue
			}
			ranges[name] = p.Value.Range()
		}
	}
	rangeOf := func(name string) hcl.Range {
		if r, ok := ranges[name]; ok {
			return r
		}
		return expr.Range()
	}
	for _, name := range slices.Sorted(maps.Keys(users)) {
		hash := users[name]
		if name == "" {
			d.errorf(rangeOf(name), "Invalid user name", "A user name is empty.")
		}
		if !hasAnyPrefix(hash, bcryptPrefixes()) {
			d.errorf(rangeOf(name), "Invalid password hash",
				"The password of user %q must be a bcrypt hash, starting with $2a$, $2b$ or $2y$.", name)
		}
	}
	return users
}

// orList quotes words and joins them: "a", "b" or "c".
func orList(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = strconv.Quote(w)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// domains converts a list of domain names: lower-cased, without a trailing
// dot, duplicates dropped.
func (d *decoder) domains(name string, expr hcl.Expression) []string {
	list, ok := value[[]string](d, name, expr)
	if !ok {
		return nil
	}
	ranges := elementRanges(expr, len(list))
	out := make([]string, 0, len(list))
	for i, s := range list {
		dom, err := normalizeDomain(s)
		if err != nil {
			d.errorf(ranges[i], "Invalid domain name", "%s: %q is not a domain name: %s.", name, s, err)
			continue
		}
		if !slices.Contains(out, dom) {
			out = append(out, dom)
		}
	}
	return out
}

// networks converts a list of CIDR prefixes or IP addresses.
func (d *decoder) networks(name string, expr hcl.Expression) []netip.Prefix {
	return d.networkList(name, expr, nil)
}

// networkList decodes a list of networks, each reported at its own
// position when it is not one, or when check (if set) says what is wrong
// with it.
func (d *decoder) networkList(name string, expr hcl.Expression, check func(netip.Prefix) string) []netip.Prefix {
	list, ok := value[[]string](d, name, expr)
	if !ok {
		return nil
	}
	ranges := elementRanges(expr, len(list))
	out := make([]netip.Prefix, 0, len(list))
	for i, s := range list {
		p, err := parseNetwork(s)
		if err != nil {
			d.errorf(ranges[i], "Invalid network", "%s: %q is not a network: %s.", name, s, err)
			continue
		}
		if check != nil {
			if why := check(p); why != "" {
				d.errorf(ranges[i], "Invalid network", "%s: %q: %s.", name, s, why)
				continue
			}
		}
		out = append(out, p)
	}
	return out
}

// Shortest proxy_protocol prefixes: a /8 of IPv4 (a whole private
// range, 10.0.0.0/8, is the widest a set of balancers sensibly needs),
// a /32 of IPv6 (a whole provider allocation).
const (
	minProxyBits4 = 8
	minProxyBits6 = 32
)

// proxies decodes proxy_protocol: networks as in networks, none of them
// wider than a /8 of IPv4 or a /32 of IPv6. A trusted network may name
// any address as its client's, so a wide one lets much of the Internet
// pass for anyone (a /0 for all of it, and 0.0.0.0/1 with 128.0.0.0/1
// too).
func (d *decoder) proxies(name string, expr hcl.Expression) []netip.Prefix {
	return d.networkList(name, expr, func(p netip.Prefix) string {
		bits, shortest := p.Bits(), minProxyBits6
		switch {
		case p.Addr().Is4():
			shortest = minProxyBits4
		case p.Addr().Is4In6(): // ::ffff:0.0.0.0/97 is 0.0.0.0/1
			bits, shortest = bits-96, minProxyBits4
		}
		if bits < shortest {
			return fmt.Sprintf("wider than a /%d, it trusts too many addresses to name their clients; list the load balancers' own addresses", shortest)
		}
		return ""
	})
}

// elementRanges gives the range of each element of a list expression, or
// the whole expression's range when it is not a list written out.
func elementRanges(expr hcl.Expression, n int) []hcl.Range {
	exprs, diags := hcl.ExprList(expr)
	ranges := make([]hcl.Range, n)
	for i := range ranges {
		if !diags.HasErrors() && len(exprs) == n {
			ranges[i] = exprs[i].Range()
		} else {
			ranges[i] = expr.Range()
		}
	}
	return ranges
}

// The decoders of single values below leave dst alone and report false
// when the argument is absent or null (the default stays) or when its value
// is bad (a diagnostic says why).

// value decodes expr, the value of the argument name, as a T (a type
// gocty can decode into).
func value[T any](d *decoder, name string, expr hcl.Expression) (T, bool) {
	var v T
	if expr == nil {
		return v, false
	}
	val, diags := expr.Value(nil)
	if diags.HasErrors() {
		d.diags = append(d.diags, diags...)
		return v, false
	}
	if val.IsNull() {
		return v, false
	}
	ty, err := gocty.ImpliedType(&v)
	if err != nil {
		panic(fmt.Sprintf("config: cannot decode into %T: %v", v, err))
	}
	val, err = convert.Convert(val, ty)
	if err == nil {
		err = gocty.FromCtyValue(val, &v)
	}
	if err != nil {
		d.errorf(expr.Range(), "Unsuitable value type", "%s: %s.", name, err)
		return v, false
	}
	return v, true
}

func (d *decoder) str(name string, expr hcl.Expression, dst *string) bool {
	v, ok := value[string](d, name, expr)
	if ok {
		*dst = v
	}
	return ok
}

func (d *decoder) boolean(name string, expr hcl.Expression, dst *bool) bool {
	v, ok := value[bool](d, name, expr)
	if ok {
		*dst = v
	}
	return ok
}

func (d *decoder) integer(name string, expr hcl.Expression, dst *int, minimum int) bool {
	v, ok := value[int](d, name, expr)
	if !ok {
		return false
	}
	if v < minimum {
		d.errorf(expr.Range(), "Invalid value", "%s must be at least %d; got %d.", name, minimum, v)
		return false
	}
	*dst = v
	return true
}

// integerIn decodes an integer from minimum to maximum.
func (d *decoder) integerIn(name string, expr hcl.Expression, dst *int, minimum, maximum int) bool {
	v := *dst
	if !d.integer(name, expr, &v, minimum) {
		return false
	}
	if v > maximum {
		d.errorf(expr.Range(), "Invalid value", "%s must be at most %d; got %d.", name, maximum, v)
		return false
	}
	*dst = v
	return true
}

// port decodes a port number, 1 to 65535.
func (d *decoder) port(name string, expr hcl.Expression, dst *int) bool {
	return d.integerIn(name, expr, dst, 1, 65535)
}

// maxTLSSessions bounds delivery's tls_sessions: each session kept takes
// up to 16 KiB, per TLS level.
const maxTLSSessions = 100000

// size decodes a size in bytes (see ParseSize), which must not be 0.
func (d *decoder) size(name string, expr hcl.Expression, dst *int64) bool {
	s, ok := value[string](d, name, expr)
	if !ok {
		return false
	}
	n, err := parseSize(s)
	if err == nil && n == 0 {
		err = errors.New("must not be 0")
	}
	if err != nil {
		d.errorf(expr.Range(), "Invalid size", "%s = %q: %s.", name, s, err)
		return false
	}
	*dst = n
	return true
}

// duration decodes a duration (see ParseDuration), which must be positive,
// or may be 0 if allowZero.
func (d *decoder) duration(name string, expr hcl.Expression, dst *time.Duration, allowZero bool) bool {
	s, ok := value[string](d, name, expr)
	if !ok {
		return false
	}
	v, err := parseDuration(s)
	switch {
	case err != nil:
	case v < 0:
		err = errors.New("must not be negative")
	case v == 0 && !allowZero:
		err = errors.New("must not be 0")
	}
	if err != nil {
		d.errorf(expr.Range(), "Invalid duration", "%s = %q: %s.", name, s, err)
		return false
	}
	*dst = v
	return true
}

// durations decodes a non-empty list of positive durations.
func (d *decoder) durations(name string, expr hcl.Expression, dst *[]time.Duration) bool {
	list, ok := value[[]string](d, name, expr)
	if !ok {
		return false
	}
	if len(list) == 0 {
		d.errorf(expr.Range(), "Invalid value", "%s needs at least one duration.", name)
		return false
	}
	ranges := elementRanges(expr, len(list))
	out := make([]time.Duration, 0, len(list))
	for i, s := range list {
		v, err := parseDuration(s)
		switch {
		case err != nil:
		case v < 0:
			err = errors.New("must not be negative")
		case v == 0:
			err = errors.New("must not be 0")
		}
		if err != nil {
			d.errorf(ranges[i], "Invalid duration", "%s: %q: %s.", name, s, err)
			continue
		}
		out = append(out, v)
	}
	if len(out) != len(list) {
		return false
	}
	*dst = out
	return true
}

func (d *decoder) enum(name string, expr hcl.Expression, dst *string, allowed []string) bool {
	s, ok := value[string](d, name, expr)
	if !ok {
		return false
	}
	if !slices.Contains(allowed, s) {
		d.errorf(expr.Range(), "Invalid value", "%s = %q: want %s.", name, s, orList(allowed))
		return false
	}
	*dst = s
	return true
}

// domain decodes a domain name, lower-cased and without a trailing dot.
func (d *decoder) domain(name string, expr hcl.Expression, dst *string) bool {
	s, ok := value[string](d, name, expr)
	if !ok {
		return false
	}
	v, err := normalizeDomain(s)
	if err != nil {
		d.errorf(expr.Range(), "Invalid domain name", "%s = %q: %s.", name, s, err)
		return false
	}
	*dst = v
	return true
}

// mailbox decodes an address local@domain: ASCII, with a domain name (not
// an address literal), which is lower-cased.
func (d *decoder) mailbox(name string, expr hcl.Expression, dst *string) bool {
	s, ok := value[string](d, name, expr)
	if !ok {
		return false
	}
	v, err := normalizeMailbox(s)
	if err != nil {
		d.errorf(expr.Range(), "Invalid address", "%s = %q: %s.", name, s, err)
		return false
	}
	*dst = v
	return true
}

// address decodes a host:port; listen allows an empty host and port 0.
func (d *decoder) address(name string, expr hcl.Expression, dst *string, listen bool) bool {
	s, ok := value[string](d, name, expr)
	if !ok {
		return false
	}
	if err := checkHostPort(s, listen); err != nil {
		d.errorf(expr.Range(), "Invalid address", "%s = %q: %s.", name, s, err)
		return false
	}
	*dst = s
	return true
}

// keyPairs reports each of a listener's certificate pairs that its
// files, both readable, do not make (a key that is not the certificate's,
// not PEM, an ECDSA key on a curve clients do not offer, an ecdsa_cert
// that is not ECDSA) at the pair's first argument. A pair with a file
// found unreadable, and every pair with skipFiles, is not checked.
func (d *decoder) keyPairs(r *rawTLS, t *TLS) {
	if d.skipFiles {
		return
	}
	if t.Cert != "" && t.Key != "" {
		if _, err := loadPair(t.Cert, t.Key); err != nil {
			d.errorf(r.Cert.Range(), "Unusable certificate", "%v.", err)
		}
	}
	if t.ECDSACert != "" && t.ECDSAKey != "" {
		if _, err := loadECDSAPair(t.ECDSACert, t.ECDSAKey); err != nil {
			d.errorf(r.ECDSACert.Range(), "Unusable certificate", "%v.", err)
		}
	}
}

// file decodes the path of a file that must be readable now, resolved
// against the config file's folder. With skipFiles it is not checked.
func (d *decoder) file(name string, expr hcl.Expression, dst *string) bool {
	s, ok := value[string](d, name, expr)
	if !ok {
		return false
	}
	if s == "" {
		d.errorf(expr.Range(), "Invalid value", "%s is empty.", name)
		return false
	}
	path := d.resolve(s)
	if d.skipFiles {
		*dst = path
		return true
	}
	if err := readable(path); err != nil {
		d.errorf(expr.Range(), "Unreadable file", "%s = %q: %s: %s.", name, s, path, err)
		return false
	}
	*dst = path
	return true
}

// readable checks that path is a regular file (or a link to one) that this
// process can open, with messages that do not depend on the platform.
func readable(path string) error {
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errors.New("no such file")
	case errors.Is(err, fs.ErrPermission):
		return errors.New("permission denied")
	case err != nil:
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.IsDir() {
		return errors.New("a directory, not a file")
	}
	return nil
}

// required reports a missing (or null) required argument of the block that
// starts at block.
func (d *decoder) required(name string, expr hcl.Expression, block hcl.Range) bool {
	if expr != nil {
		if v, diags := expr.Value(nil); diags.HasErrors() || !v.IsNull() {
			return true // present: its value is checked by the caller
		}
	}
	d.errorf(block, "Missing required argument",
		"The argument %q is required, but no definition was found.", name)
	return false
}

// resolve makes a relative path relative to the config file's folder.
func (d *decoder) resolve(path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(d.dir, path)
}

func (d *decoder) errorf(subject hcl.Range, summary, format string, args ...any) {
	d.diags = append(d.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  subject.Ptr(),
	})
}

// loopbackHost reports whether the host of hostport is a loopback address
// or localhost.
func loopbackHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

package config

import "github.com/hashicorp/hcl/v2"

// The raw structs below are the HCL schema of gateway.hcl, decoded by gohcl.
// Every argument is an hcl.Expression, so that decoding its value (in
// decode.go) can report a wrong type or a bad value at the value's own
// range; blocks carry their ranges for "missing" and "duplicate"
// diagnostics.
//
// To add a block: add a raw struct here and a field for it in its parent,
// give it a converter method on decoder (decode.go), call that from the
// parent's converter, and put its defaults in defaults.go.

// rawFile is the top level of gateway.hcl.
type rawFile struct {
	Hostname        hcl.Expression `hcl:"hostname,optional"`
	DataDir         hcl.Expression `hcl:"data_dir,optional"`
	ShutdownTimeout hcl.Expression `hcl:"shutdown_timeout,optional"`
	Domains         hcl.Expression `hcl:"domains,optional"`
	Pipeline        hcl.Expression `hcl:"pipeline,optional"`

	Log       *rawLog       `hcl:"log,block"`
	Listeners []rawListener `hcl:"listener,block"`
	Relay     *rawRelay     `hcl:"relay,block"`
	Auth      *rawAuth      `hcl:"auth,block"`
	Delivery  *rawDelivery  `hcl:"delivery,block"`
	Admin     *rawAdmin     `hcl:"admin,block"`
	Inject    *rawInject    `hcl:"inject,block"`
	Lua       []rawLua      `hcl:"lua,block"`
	Plugins   []rawPlugin   `hcl:"plugin,block"`
	DKIM      []rawDKIM     `hcl:"dkim,block"`
	Cluster   *rawCluster   `hcl:"cluster,block"`

	// AuthCheck is authentication { … } (not Auth, the users' block).
	AuthCheck *rawAuthentication `hcl:"authentication,block"`
}

// rawLog is log { … }.
type rawLog struct {
	Level  hcl.Expression `hcl:"level,optional"`
	Format hcl.Expression `hcl:"format,optional"`
}

// rawListener is listener "name" { … }.
type rawListener struct {
	Name      string    `hcl:"name,label"`
	NameRange hcl.Range `hcl:"name,label_range"`
	DefRange  hcl.Range `hcl:",def_range"`

	Address             hcl.Expression `hcl:"address,optional"` // required, checked by the converter
	MaxMessageSize      hcl.Expression `hcl:"max_message_size,optional"`
	MaxRecipients       hcl.Expression `hcl:"max_recipients,optional"`
	MaxLineLength       hcl.Expression `hcl:"max_line_length,optional"`
	MaxHeaderSize       hcl.Expression `hcl:"max_header_size,optional"`
	MaxConnections      hcl.Expression `hcl:"max_connections,optional"`
	MaxConnectionsPerIP hcl.Expression `hcl:"max_connections_per_ip,optional"`
	MaxErrors           hcl.Expression `hcl:"max_errors,optional"`
	BareLineEndings     hcl.Expression `hcl:"bare_line_endings,optional"`
	AuthRequired        hcl.Expression `hcl:"auth_required,optional"`
	AuthInsecure        hcl.Expression `hcl:"auth_insecure,optional"`
	VerifySenderDomain  hcl.Expression `hcl:"verify_sender_domain,optional"`
	MaxHops             hcl.Expression `hcl:"max_hops,optional"`
	ProxyProtocol       hcl.Expression `hcl:"proxy_protocol,optional"`

	TLS      *rawTLS      `hcl:"tls,block"`
	Timeouts *rawTimeouts `hcl:"timeouts,block"`
}

// rawTLS is tls { … } in a listener.
type rawTLS struct {
	DefRange hcl.Range      `hcl:",def_range"`
	Cert     hcl.Expression `hcl:"cert,optional"` // required
	Key      hcl.Expression `hcl:"key,optional"`  // required
	Implicit hcl.Expression `hcl:"implicit,optional"`
	// An ECDSA certificate beside cert: both or neither.
	ECDSACert hcl.Expression `hcl:"ecdsa_cert,optional"`
	ECDSAKey  hcl.Expression `hcl:"ecdsa_key,optional"`
}

// rawTimeouts is timeouts { … } in a listener.
type rawTimeouts struct {
	Command   hcl.Expression `hcl:"command,optional"`
	DataBlock hcl.Expression `hcl:"data_block,optional"`
	Message   hcl.Expression `hcl:"message,optional"`
}

// rawRelay is relay { … }.
type rawRelay struct {
	Networks      hcl.Expression `hcl:"networks,optional"`
	Authenticated hcl.Expression `hcl:"authenticated,optional"`
}

// rawAuth is auth { … }.
type rawAuth struct {
	Users        hcl.Expression `hcl:"users,optional"`
	FailureLimit hcl.Expression `hcl:"auth_failure_limit,optional"`
	Lockout      hcl.Expression `hcl:"auth_lockout,optional"`
	FailureDelay hcl.Expression `hcl:"auth_failure_delay,optional"`
}

// rawDelivery is delivery { … }.
type rawDelivery struct {
	Resolver                hcl.Expression `hcl:"resolver,optional"` // a string or a list of strings
	Port                    hcl.Expression `hcl:"port,optional"`
	TLS                     hcl.Expression `hcl:"tls,optional"`
	Chunking                hcl.Expression `hcl:"chunking,optional"`
	MaxConnections          hcl.Expression `hcl:"max_connections,optional"`
	MaxConnectionsPerDomain hcl.Expression `hcl:"max_connections_per_domain,optional"`
	Retry                   hcl.Expression `hcl:"retry,optional"`
	MaxLifetime             hcl.Expression `hcl:"max_lifetime,optional"`
	DelayWarning            hcl.Expression `hcl:"delay_warning,optional"`
	Postmaster              hcl.Expression `hcl:"postmaster,optional"`
	ConnectTimeout          hcl.Expression `hcl:"connect_timeout,optional"`
	CommandTimeout          hcl.Expression `hcl:"command_timeout,optional"`
	DeadHostTTL             hcl.Expression `hcl:"dead_host_ttl,optional"`
	TLSSessions             hcl.Expression `hcl:"tls_sessions,optional"`
	ProxyAddresses          hcl.Expression `hcl:"proxy_addresses,optional"`
	HoldDomains             hcl.Expression `hcl:"hold_domains,optional"`
	HoldExpires             hcl.Expression `hcl:"hold_expires,optional"`
	MTASTS                  hcl.Expression `hcl:"mta_sts,optional"`
	DANE                    hcl.Expression `hcl:"dane,optional"`
	TLSCAFile               hcl.Expression `hcl:"tls_ca_file,optional"`

	TLSReports *rawTLSReports `hcl:"tls_reports,block"`
	Routes     []rawRoute     `hcl:"route,block"`
}

// rawTLSReports is tls_reports { … } in delivery.
type rawTLSReports struct {
	DefRange     hcl.Range      `hcl:",def_range"`
	From         hcl.Expression `hcl:"from,optional"` // required
	Organization hcl.Expression `hcl:"organization,optional"`
}

// rawRoute is route "domain" { … } in delivery.
type rawRoute struct {
	Domain      string    `hcl:"domain,label"`
	DomainRange hcl.Range `hcl:"domain,label_range"`

	Via       hcl.Expression `hcl:"via,optional"`
	Transport hcl.Expression `hcl:"transport,optional"`
	Path      hcl.Expression `hcl:"path,optional"`
	TLS       hcl.Expression `hcl:"tls,optional"`

	Auth *rawRouteAuth `hcl:"auth,block"`
}

// rawRouteAuth is auth { … } in a route: the credentials for a smarthost.
type rawRouteAuth struct {
	DefRange     hcl.Range      `hcl:",def_range"`
	Username     hcl.Expression `hcl:"username,optional"` // required
	Password     hcl.Expression `hcl:"password,optional"` // password or password_file
	PasswordFile hcl.Expression `hcl:"password_file,optional"`
}

// rawAdmin is admin { … }.
type rawAdmin struct {
	DefRange hcl.Range      `hcl:",def_range"`
	Address  hcl.Expression `hcl:"address,optional"` // required
}

// rawInject is inject { … }.
type rawInject struct {
	DefRange  hcl.Range      `hcl:",def_range"`
	Address   hcl.Expression `hcl:"address,optional"` // required
	Token     hcl.Expression `hcl:"token,optional"`   // token or token_file
	TokenFile hcl.Expression `hcl:"token_file,optional"`
}

// rawLua is lua "name" { … }: a Lua script in the hook pipeline.
type rawLua struct {
	Name      string    `hcl:"name,label"`
	NameRange hcl.Range `hcl:"name,label_range"`
	DefRange  hcl.Range `hcl:",def_range"`

	Path      hcl.Expression `hcl:"path,optional"` // required
	Timeout   hcl.Expression `hcl:"timeout,optional"`
	OnError   hcl.Expression `hcl:"on_error,optional"`
	MaxMemory hcl.Expression `hcl:"max_memory,optional"`
	Params    hcl.Expression `hcl:"params,optional"`

	Match *rawMatch `hcl:"match,block"`
}

// rawPlugin is plugin "name" { … }: an out-of-process plugin in the hook
// pipeline.
type rawPlugin struct {
	Name      string    `hcl:"name,label"`
	NameRange hcl.Range `hcl:"name,label_range"`
	DefRange  hcl.Range `hcl:",def_range"`

	Path    hcl.Expression `hcl:"path,optional"` // required
	SHA256  hcl.Expression `hcl:"sha256,optional"`
	Timeout hcl.Expression `hcl:"timeout,optional"`
	OnError hcl.Expression `hcl:"on_error,optional"`

	Match  *rawMatch        `hcl:"match,block"`
	Config *rawPluginConfig `hcl:"config,block"`
}

// rawPluginConfig is config { … } in a plugin block: any attributes, which
// the plugin's schema checks when it starts.
type rawPluginConfig struct {
	DefRange hcl.Range `hcl:",def_range"`
	Body     hcl.Body  `hcl:",remain"`
}

// rawMatch is match { … } in a hook block (lua, plugin).
type rawMatch struct {
	Stage           hcl.Expression `hcl:"stage,optional"`
	Client          hcl.Expression `hcl:"client,optional"`
	SenderDomain    hcl.Expression `hcl:"sender_domain,optional"`
	RecipientDomain hcl.Expression `hcl:"recipient_domain,optional"`
	Authenticated   hcl.Expression `hcl:"authenticated,optional"`
	Command         hcl.Expression `hcl:"command,optional"`
}

// rawAuthentication is authentication { … }: the checks of inbound mail.
type rawAuthentication struct {
	SPF        hcl.Expression `hcl:"spf,optional"`
	DKIM       hcl.Expression `hcl:"dkim,optional"`
	DMARC      hcl.Expression `hcl:"dmarc,optional"`
	ARC        hcl.Expression `hcl:"arc,optional"`
	ARCSeal    hcl.Expression `hcl:"arc_seal,optional"`
	AuthservID hcl.Expression `hcl:"authserv_id,optional"`
}

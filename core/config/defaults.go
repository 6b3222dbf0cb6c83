package config

import "time"

// Every default of gateway.hcl is here, so the documentation in the root
// gateway.hcl and the README can be checked against one place.
const (
	defaultDataDir         = "data" // relative to the config file's folder
	defaultShutdownTimeout = 30 * time.Second
	fallbackHostname       = "localhost" // when os.Hostname fails or is not a domain name

	defaultLogLevel  = "info"
	defaultLogFormat = "text"

	defaultMaxMessageSize      = 25 << 20  // 25MB
	defaultMaxRecipients       = 100       // RFC 5321 §4.5.3.1.8: at least 100 must be accepted
	defaultMaxLineLength       = 2048      // bytes including CRLF
	minMaxLineLength           = 512       // RFC 5321 §4.5.3.1.4: a command line is up to 512 octets
	defaultMaxHeaderSize       = 256 << 10 // 256KB
	defaultMaxConnections      = 1000
	defaultMaxConnectionsPerIP = 50
	defaultMaxErrors           = 20
	defaultBareLineEndings     = "reject"
	defaultMaxHops             = 50 // Received fields; Postfix's hopcount_limit

	// RFC 5321 §4.5.3.2.
	defaultCommandTimeout   = 5 * time.Minute  // §4.5.3.2.7, server timeout
	defaultDataBlockTimeout = 3 * time.Minute  // §4.5.3.2.5, data block
	defaultMessageTimeout   = 10 * time.Minute // §4.5.3.2.6, DATA termination

	defaultRelayAuthenticated = true

	// AUTH guessing: fail2ban's maxretry, findtime and bantime, Dovecot's
	// auth_failure_delay.
	defaultAuthFailureLimit = 5
	defaultAuthLockout      = 15 * time.Minute
	defaultAuthFailureDelay = 2 * time.Second
	maxAuthFailureDelay     = time.Minute // a reply held longer holds a session for nothing

	defaultRouteTransport = transportSMTP

	defaultDeliveryPort                    = 25
	defaultDeliveryTLS                     = "opportunistic"
	defaultDeliveryChunking                = "binarymime"
	defaultDeliveryMaxConnections          = 100
	defaultDeliveryMaxConnectionsPerDomain = 20
	defaultMaxLifetime                     = 5 * 24 * time.Hour
	defaultDelayWarning                    = 4 * time.Hour
	defaultConnectTimeout                  = 30 * time.Second
	defaultDeliveryCommandTimeout          = 5 * time.Minute
	defaultDeadHostTTL                     = 30 * time.Second
	defaultTLSSessions                     = 1000
	defaultResolverPort                    = "53" // for a resolver given as a bare IP address

	defaultHookTimeout   = time.Second     // each call of a lua hook
	defaultLuaMaxMemory  = 64 << 20        // bytes of one Lua state
	minLuaMaxMemory      = 1 << 20         // the least max_memory of a lua block
	defaultPluginTimeout = 2 * time.Second // each call of a plugin (a process away)
	defaultOnError       = "defer"         // a hook that errors, panics or times out: 451 4.3.0

	// authentication { … }: what a block without the setting does.
	defaultAuthSPF   = true
	defaultAuthDKIM  = true
	defaultAuthDMARC = "report"
	defaultAuthARC   = false

	// cluster { … }.
	defaultClusterReplicas = 3
	defaultTakeoverAfter   = 30 * time.Second
)

// The built-in transports of a route; any other lower-case name is a
// plugin transport.
const (
	transportSMTP    = "smtp"
	transportLMTP    = "lmtp"
	transportMaildir = "maildir"
)

// defaultRetry is the waits before retries 1, 2, …; the last repeats.
func defaultRetry() []time.Duration {
	return []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour}
}

// The allowed values of the enumerated settings, the default first. They
// are functions so that no caller can change a shared slice.
func logLevels() []string       { return []string{defaultLogLevel, "debug", "warn", "error"} }
func logFormats() []string      { return []string{defaultLogFormat, "json"} }
func bareLineEndings() []string { return []string{defaultBareLineEndings, "fix"} }
func deliveryTLS() []string {
	return []string{defaultDeliveryTLS, "none", "encrypt", "verify", "require"}
}
func deliveryChunking() []string { return []string{defaultDeliveryChunking, "always"} }
func onErrors() []string         { return []string{defaultOnError, "continue", "reject"} }

// defaultConfig is the configuration of an empty file, except for the
// listener that a file must declare and the hostname (defaultHostname,
// which asks the machine only when the file has no hostname).
func defaultConfig() Config {
	return Config{
		DataDir:         defaultDataDir,
		Log:             Log{Level: defaultLogLevel, Format: defaultLogFormat},
		Relay:           Relay{Authenticated: defaultRelayAuthenticated},
		Auth:            Auth{FailureLimit: defaultAuthFailureLimit, Lockout: defaultAuthLockout, FailureDelay: defaultAuthFailureDelay},
		Delivery:        DefaultDelivery(),
		ShutdownTimeout: defaultShutdownTimeout,
	}
}

// DefaultDelivery is the delivery block when absent or empty. The delivery
// engine and its transports fill a hand-built Delivery's zero fields from
// it, so every default lives here.
func DefaultDelivery() Delivery {
	return Delivery{
		Port:                    defaultDeliveryPort,
		TLS:                     defaultDeliveryTLS,
		Chunking:                defaultDeliveryChunking,
		MaxConnections:          defaultDeliveryMaxConnections,
		MaxConnectionsPerDomain: defaultDeliveryMaxConnectionsPerDomain,
		Retry:                   defaultRetry(),
		MaxLifetime:             defaultMaxLifetime,
		DelayWarning:            defaultDelayWarning,
		ConnectTimeout:          defaultConnectTimeout,
		CommandTimeout:          defaultDeliveryCommandTimeout,
		DeadHostTTL:             defaultDeadHostTTL,
		TLSSessions:             defaultTLSSessions,
		MTASTS:                  true,
		DANE:                    true,
	}
}

// defaultHostname is the machine's name (the result of os.Hostname) if it
// is a usable domain name, and "localhost" otherwise.
func defaultHostname(name string, err error) string {
	if err != nil {
		return fallbackHostname
	}
	d, derr := normalizeDomain(name)
	if derr != nil {
		return fallbackHostname
	}
	return d
}

// DefaultListener is a listener block with only its name set. The SMTP
// server fills a hand-built Listener's zero limits from it, so every default
// lives here.
func DefaultListener(name string) Listener {
	return Listener{
		Name:                name,
		MaxMessageSize:      defaultMaxMessageSize,
		MaxRecipients:       defaultMaxRecipients,
		MaxLineLength:       defaultMaxLineLength,
		MaxHeaderSize:       defaultMaxHeaderSize,
		MaxConnections:      defaultMaxConnections,
		MaxConnectionsPerIP: defaultMaxConnectionsPerIP,
		MaxErrors:           defaultMaxErrors,
		BareLineEndings:     defaultBareLineEndings,
		MaxHops:             defaultMaxHops,
		Timeouts: Timeouts{
			Command:   defaultCommandTimeout,
			DataBlock: defaultDataBlockTimeout,
			Message:   defaultMessageTimeout,
		},
	}
}

// defaultRoute is a route block with only its (normalized) domain set.
func defaultRoute(domain string) Route {
	return Route{Domain: domain, Transport: defaultRouteTransport}
}

// defaultLuaHook is a lua block with only its name set.
func defaultLuaHook(name string) LuaHook {
	return LuaHook{Name: name, Timeout: defaultHookTimeout, OnError: defaultOnError, MaxMemory: defaultLuaMaxMemory}
}

// defaultPluginHook is a plugin block with only its name set.
func defaultPluginHook(name string) PluginHook {
	return PluginHook{Name: name, Timeout: defaultPluginTimeout, OnError: defaultOnError}
}

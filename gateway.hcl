# gateway.hcl: the configuration `go run ./cmd/gateway serve` starts with.
# It runs without root: everything listens on loopback ports above 1024.
# Relative paths are resolved against this file's folder. Sizes are like
# "25MB" (KB, MB and GB are powers of 1024) and durations like "30s", "5m"
# or "1d12h". Check a change with `go run ./cmd/gateway check`.

# The name in the greeting, the EHLO reply and Received headers.
# Default: the machine's host name, or "localhost".
hostname = "localhost"

# Where the spool and other state are kept. Default: "data".
data_dir = "data"

# How long a graceful stop lets sessions finish. Default: "30s".
# shutdown_timeout = "30s"

# Logging: level is debug, info, warn or error; format is text or json.
# Default: level = "info", format = "text".
# log {
#   level  = "info"
#   format = "text"
# }

# An SMTP listener; at least one is required, each with its own name and
# address. Only address is required; the rest are shown with their defaults.
listener "mx" {
  address = "127.0.0.1:2525" # host:port to listen on

  # max_message_size       = "25MB"   # largest message accepted (announced with SIZE)
  # max_recipients         = 100      # RCPT TO per transaction
  # max_line_length        = 2048     # bytes per command line, CRLF included (at least 512)
  # max_header_size        = "256KB"  # bytes of a message's header section
  # max_connections        = 1000     # concurrent sessions on this listener
  # max_connections_per_ip = 50       # concurrent sessions from one client IP
  # max_errors             = 20       # protocol errors before the session is closed
  # bare_line_endings      = "reject" # a bare CR or LF in a message: "reject" or "fix"
  # auth_required          = false    # require AUTH before MAIL (a submission listener)
  # auth_insecure          = false    # offer AUTH without TLS
  # verify_sender_domain   = false    # MAIL FROM's domain must have an MX, A or AAAA record
  # max_hops               = 50       # most Received fields a message may carry (a loop beyond)

  # STARTTLS with this certificate and key (PEM files). Default: no TLS.
  # With implicit = true the listener speaks TLS from the first byte
  # instead (RFC 8314: submissions on port 465) and offers no STARTTLS.
  # Under TLS the listener offers REQUIRETLS (RFC 8689).
  # ecdsa_cert and ecdsa_key (both or neither) add an ECDSA certificate,
  # offered first to clients that take one (most MTAs): a full handshake
  # then costs the server about half what an RSA one does; cert stays for
  # clients that take only RSA (Postfix's smtpd_tls_eccert_file).
  # tls {
  #   cert       = "cert.pem"
  #   key        = "key.pem"
  #   implicit   = false
  #   ecdsa_cert = "ecdsa-cert.pem"
  #   ecdsa_key  = "ecdsa-key.pem"
  # }

  # Behind a load balancer: connections from these networks (CIDR or IP)
  # start with a PROXY protocol header (v1 or v2), whose client address
  # every check, limit, hook and Received field then sees. A connection
  # from them without one, or a header from anyone else, is closed.
  # None may be wider than a /8 (IPv4) or a /32 (IPv6): each may name
  # any address as its client's. Default: none.
  # proxy_protocol = ["10.0.0.5/32"]

  # Server timeouts (RFC 5321 §4.5.3.2). Defaults shown.
  # timeouts {
  #   command    = "5m"
  #   data_block = "3m"
  #   message    = "10m"
  # }
}

# Mail for these domains is accepted from anyone. Default: none.
domains = ["localhost", "example.test"]

# Who may send mail to other domains (relay).
relay {
  networks = ["127.0.0.0/8", "::1/128"] # clients in these networks (CIDR or IP). Default: none
  # authenticated = true                # authenticated clients may relay. Default: true
}

# AUTH: the built-in users (user name = bcrypt hash: $2a$, $2b$ or $2y$;
# default none, and AUTH is not offered) and the guard against password
# guessing, one for all listeners. A client (an IPv4 address, an IPv6 /64)
# whose failures within auth_lockout reach auth_failure_limit is locked out
# for auth_lockout: every AUTH it sends gets "454 4.7.0 Too many
# authentication failures, try again later" without a password check, even
# with the right password (or the lockout would tell a guesser which guess
# was right). Every failure but the first in the window, and every refusal,
# is answered after auth_failure_delay. Each one logs a WARN line
# "smtp: auth failure from <IP>" for fail2ban (README). Password checks
# run on at most half the cores; one that waits 5s for a turn gets 454 4.7.0.
# The settings below are shown with their defaults.
# auth {
#   users              = { "alice" = "$2a$10$..." }
#   auth_failure_limit = 5     # 0 = no limit
#   auth_lockout       = "15m"
#   auth_failure_delay = "2s"  # at most 1m
# }

# Delivery of queued mail. Mail for example.test and localhost goes into a
# Maildir per recipient under the data folder (a message to
# postmaster@example.test arrives in data/mail/example.test/postmaster/new/);
# everything else goes to the MX hosts of its domain. The settings below are
# shown with their defaults.
delivery {
  # resolver                   = "127.0.0.1:5353" # DNS server(s), "ip:port" or a list; a bare IP gets :53.
  #                                               # Default: the servers of /etc/resolv.conf
  # port                       = 25               # SMTP port of MX hosts
  # tls                        = "opportunistic"  # STARTTLS, Postfix's levels: "none"; "opportunistic"
  #                                               # (when offered, any certificate); "encrypt" (TLS or
  #                                               # defer, any certificate); "verify" (TLS or defer,
  #                                               # chain and name checked against the system roots
  #                                               # plus tls_ca_file); "require" is "verify". A
  #                                               # domain's MTA-STS or DANE policy (below) is
  #                                               # stronger than "opportunistic" and "encrypt" and
  #                                               # wins over them; "none" turns them off; a route's
  #                                               # via is not an MX, so only its tls counts
  # mta_sts                    = true             # honour MTA-STS (RFC 8461): under "enforce", only the policy's
  #                                               # MX hosts, over TLS verified for the MX name; else defer 4.7.5
  # dane                       = true             # honour DANE (RFC 7672): an MX host whose TLSA records come with
  #                                               # the AD bit gets TLS matched against them, or waits. The AD bit
  #                                               # is trusted: resolver must be a DNSSEC-validating resolver on a
  #                                               # trusted path (127.0.0.1), as Postfix's smtp_dns_support_level = dnssec
  # tls_ca_file                = "ca.pem"         # extra trust anchors for "verify", MTA-STS and TLS-RPT servers
  #                                               # (a private CA); default: the system roots only
  # tls_reports {                                 # TLS-RPT (RFC 8460): once a day, each domain that publishes
  #   from         = "tlsrpt@example.test"        # _smtp._tls gets the day's successes and failures, by mail
  #   organization = "Example Org"                # (through our queue) or HTTPS; default: off. organization
  # }                                             # defaults to from's domain
  # chunking                   = "binarymime"     # BDAT to a next hop offering CHUNKING: "binarymime" (only for
  #                                               # BODY=BINARYMIME mail, which needs it) or "always" (every message)
  # max_connections            = 100              # outbound connections in all
  # max_connections_per_domain = 20               # outbound connections per destination
  # retry                      = ["1m", "5m", "15m", "30m", "1h"] # waits between attempts; the last repeats
  # max_lifetime               = "5d"             # bounce what is still undelivered after this
  # delay_warning              = "4h"             # send one delay notice after this; "0" = never
  # postmaster                 = "postmaster@example.test" # gets RCPT TO:<postmaster> and undeliverable bounces.
  #                                               # Default: none (<postmaster> goes to postmaster@<hostname>; bounces are logged)
  # connect_timeout            = "30s"            # TCP connect to a next hop
  # command_timeout            = "5m"             # each reply from a next hop
  # dead_host_ttl              = "30s"            # a host whose connect failed is not dialled again for this long
  #                                               # ("0" = always dial); ETRN and `gateway queue retry` clear it
  # tls_sessions               = 1000             # TLS sessions kept per TLS level for new connections to resume (at most 100000)
  #                                               # (not under DANE or MTA-STS testing); 0 = a full handshake every time
  # proxy_addresses            = ["203.0.113.25"] # addresses a NAT or load balancer forwards to us: an MX there is us
  # hold_domains               = ["bk.example.test", "*.branch.example.test"] # queue mail for these recipient domains
  #                                               # without trying it ("*." = every subdomain); ETRN or
  #                                               # `gateway queue retry -domain D` delivers D's mail once; it still
  #                                               # expires after max_lifetime; a reload changes the list
  # hold_expires               = true             # false: held mail outlives max_lifetime while held
  #                                               # (then one attempt when released); needs a restart

  # A static route per domain ("*" matches all): transport is "smtp" (the
  # default; via = "host:port" instead of an MX look-up), "lmtp" (via, or
  # a unix socket as path), "maildir" (path = the Maildir root) or a plugin
  # transport's name; tls overrides the tls above.
  route "example.test" {
    transport = "maildir"
    path      = "data/mail"
  }
  route "localhost" {
    transport = "maildir"
    path      = "data/mail"
  }
  # route "example.org" {
  #   via = "127.0.0.1:2626"
  #   tls = "none"
  # }
  # A smarthost that wants a login: AUTH PLAIN (or LOGIN) with the
  # password read from a file next to this one. The credentials go to via
  # only, over TLS with its certificate verified (tls is "require" here
  # unless the route says "none" to allow clear text). A refused login
  # defers the mail.
  # route "*" {
  #   via = "smtp.provider.example:587"
  #   tls = "require"
  #   auth {
  #     username      = "gateway@example.org"
  #     password_file = "smarthost.pass"
  #   }
  # }
}

# Outbound DKIM signing (RFC 6376; Ed25519 per RFC 8463): one block per
# signing domain. Mail from a relay client or an authenticated user
# (gateway sendmail and inject included) that leaves through an smtp or a
# plugin transport (not lmtp or maildir) is signed, relaxed/relaxed, when
# the domain of its From: field, or the nearest parent of it, has a
# block; after the predelivery hooks' changes, with the signature on top.
# The key file is PEM (PKCS#8 or PKCS#1): RSA of at least 1024 bits
# (rsa-sha256) or Ed25519 (ed25519-sha256), read when the configuration
# loads; a reload reads it again. `gateway dkim keygen -domain example.test
# -selector s1 -out dkim` writes one and prints the TXT record to publish
# at s1._domainkey.example.test. headers are the fields signed when
# present (default: From, Sender, Reply-To, Subject, Date, Message-ID,
# To, Cc, the MIME, Resent-*, thread and List-* fields); From is always
# signed once more than the message has it, so none can be added. Default:
# no signing.
#
# dkim "example.test" {
#   selector = "s1"
#   key_file = "dkim/example.test.s1.pem" # relative to this file
#   headers  = ["From", "To", "Cc", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"]
# }

# Checks of inbound mail from clients neither in relay.networks nor
# authenticated, at the end of DATA before the data hook: SPF (RFC 7208,
# MAIL FROM or HELO for <>), every DKIM-Signature (rsa-sha256,
# ed25519-sha256) and DMARC (alignment with the From: domain, p, sp, pct).
# The message gets an Authentication-Results field with the results on
# top; one with our authserv-id that came with it is removed.
# Hooks see the results as ctx.auth (Lua) and Message.Auth (plugins).
# dmarc: "off"; "report" (the header only); "enforce": p=reject → 550
# 5.7.1, p=quarantine → accepted with "X-Gateway-Quarantine: dmarc (policy
# of <domain>)", DNS trouble that leaves the outcome open → 451 4.7.5.
# arc verifies an incoming ARC chain; arc_seal = "example.test" names the
# dkim block whose key (RSA) seals the ARC sets of mail we forward, from
# outside to another system (no sealing when absent).
# Default: off (no authentication block); inside the block the defaults
# are shown.
# authentication {
#   spf         = true
#   dkim        = true
#   dmarc       = "report"
#   arc         = false
#   authserv_id = "localhost"   # default: hostname
# }

# The admin HTTP API. Default: off (no admin block).
admin {
  address = "127.0.0.1:8025" # host:port; keep it on loopback
}

# A plugin: an executable the gateway starts and talks to over gRPC
# (`make plugins` builds the shipped ones into bin/). Its config block is
# checked against the schema the plugin reports (`gateway plugin probe`
# prints it). List it in pipeline as "plugin.<name>".
#
# plugin "aliases" {
#   path     = "bin/gateway-plugin-aliases" # relative to this file
#   sha256   = "…"                          # optional: refuse a binary that changed (sha256sum)
#   timeout  = "2s"                         # deadline of each call. Default: "2s"
#   on_error = "defer"                      # as for lua; also while the plugin restarts
#   match {
#     stage   = ["rcpt", "command"]
#     command = ["EXPN"]                    # at the command stage, only these verbs reach it
#   }
#   config {
#     aliases_file = "examples/edge-gateway/aliases" # a plugin runs in this file's folder: relative paths are relative to it
#     domain       = "example.test"
#   }
# }

# HTTP injection: POST /v1/messages with a JSON document (the shape the
# webhook plugin posts) and "Authorization: Bearer <token>". The message
# meets the same hooks and queue as SMTP mail. Default: off.
#
# inject {
#   address    = "127.0.0.1:8026"
#   token_file = "inject.token" # or token = "…"; at least 16 characters
# }

# Hooks: Lua scripts that answer at each stage (connect, helo, auth, mail,
# rcpt, command, data, predelivery, and the delivered, deferred, bounced and
# disconnect notifications). They run in pipeline order; the first that
# decides (accept, reject, defer, drop) ends the stage. A SIGHUP or
# POST /v1/reload on the admin API reloads pipeline and the lua blocks
# without a restart (every other setting needs one); if anything fails to
# load, the running hooks stay. Default: no hooks.
#
# pipeline = ["lua.relay"]  # "lua.<name>" of every lua block, once each. Default: the blocks' order
#
# lua "relay" {
#   path       = "scripts/relay.lua" # the script (relative to this file)
#   timeout    = "1s"                # deadline of each call. Default: "1s"
#   on_error   = "defer"             # on an error, panic or timeout: "defer" (451 4.3.0), "continue" or "reject"
#   max_memory = "64MB"              # most memory one Lua state takes; a call past it fails (on_error). Default: "64MB"
#   params     = { allow_networks = ["10.0.0.0/8"] } # any HCL object; the script reads it as gw.params
#
#   # Call the script only for requests that meet every condition given.
#   # Default: every request at the stages the script has an on_<stage> for.
#   match {
#     stage            = ["mail", "rcpt"]                 # stage names
#     client           = ["10.0.0.0/8", "2001:db8::/32"]  # client IP in one of these
#     sender_domain    = ["example.test", "*.example.test"] # "*." = any subdomain
#     recipient_domain = ["example.org"]                  # at rcpt the recipient at hand; else any
#     authenticated    = false                            # true: only AUTH sessions; false: only others
#   }
# }


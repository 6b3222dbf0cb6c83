# examples/edge-gateway: the edge mail gateway of an organisation,
# example.test. It takes mail from the Internet on "mx" and from its own
# users on "submission", expands aliases and mailing lists, stores local
# mail, and hands the help desk's mail to a ticketing system over HTTP.
# README.md explains each part; transcript.txt is the conversation
# edge_gateway_test.go replays.
#
# Build the plugins, then run it, both from the repository root (the
# plugins run in this file's folder, so their own settings below,
# aliases_file and lists_dir, are relative to it like every other path):
#
#   for p in aliases lists webhook; do
#     go build -o examples/edge-gateway/bin/gateway-plugin-$p ./plugins/$p
#   done
#   go run ./cmd/gateway serve -config examples/edge-gateway/gateway.hcl

hostname = "mx.example.test"
data_dir = "data" # relative to this file: examples/edge-gateway/data

# Inbound mail from the Internet, on port 25 in production.
listener "mx" {
  address = "127.0.0.1:2532"

  # MAIL FROM must name a domain that exists (MX, A or AAAA record), or
  # 550 5.1.8; a DNS failure gives 450 4.1.8. Bounces (<>) are not checked.
  verify_sender_domain = true

  # A message that arrives with more Received fields than this is taken
  # for a mail loop (554 5.4.6). The default, shown.
  # max_hops = 50
}

# Our users' mail clients, on port 587 in production: AUTH before MAIL.
listener "submission" {
  address       = "127.0.0.1:2533"
  auth_required = true

  # Passwords must not cross the network in clear text: in production the
  # listener has a certificate, STARTTLS is offered, and AUTH is offered
  # only after it. The example has no certificate, so it offers AUTH
  # without TLS on loopback instead; delete auth_insecure once tls is in.
  # tls { cert = "/etc/gateway/tls/fullchain.pem"  key = "/etc/gateway/tls/privkey.pem" }
  auth_insecure = true
}

# Mail for these domains is ours: accepted from anyone.
domains = ["example.test", "hooks.example.test"]

# Who may send mail to other domains: our application servers, and users
# who authenticated (on submission).
relay {
  networks      = ["10.20.0.0/16"]
  authenticated = true
}

# alice's password is "password" (bcrypt; make hashes with htpasswd -nbB).
auth {
  users = { alice = "$2a$10$FOVRKS.3rivPOn07Be/o8uZQJjVwzDFToRf5zv4heHJrYeFV.1pV." }
}

delivery {
  # The DNS server for MX look-ups and for verify_sender_domain: a
  # validating resolver next to the gateway (unbound, say).
  resolver = "127.0.0.1:5353"

  # Bounces that cannot be returned to their sender go here.
  postmaster = "postmaster@example.test"

  # The internal mail store. With an LMTP server (Dovecot, Cyrus):
  #   route "example.test" { transport = "lmtp"  via = "mailstore.example.test:24" }
  # or over a unix socket:
  #   route "example.test" { transport = "lmtp"  path = "/var/run/dovecot/lmtp" }
  # Here, a Maildir per user: data/mail/example.test/<user>/new/.
  route "example.test" {
    transport = "maildir"
    path      = "data/mail"
  }

  # Mail to hooks.example.test becomes an HTTP POST: the transport of the
  # webhook plugin below.
  route "hooks.example.test" {
    transport = "webhook"
  }

  # Everything else: MX look-up, opportunistic STARTTLS (the defaults).
}

# Outbound DKIM: what our users and application servers send out with a
# From: in example.test (or a subdomain) is signed with this key. It is a
# demo key, public in this repository: make your own with
#   gateway dkim keygen -domain example.test -selector s1 -out dkim
# and publish the TXT record it prints at s1._domainkey.example.test.
dkim "example.test" {
  selector = "s1"
  key_file = "dkim/example.test.s1.pem" # relative to this file
}

# Checks of mail from outside (clients neither in relay.networks nor
# logged in): SPF, DKIM, DMARC and the ARC chain, in one
# Authentication-Results on top that hooks read as ctx.auth. A From: that
# fails DMARC under its domain's p=reject is refused (550 5.7.1). Mail
# from outside that the aliases and lists plugins forward to another
# domain is sealed (ARC) with the dkim key above, so that its receiver can
# see the results forwarding breaks.
authentication {
  dmarc    = "enforce"
  arc      = true
  arc_seal = "example.test"
}

# The hooks, in the order they run at every stage. relay.lua decides at
# MAIL only (see its match block): an accept at RCPT would end the rcpt
# stage before the aliases and lists plugins saw the recipient. Every
# hook block must be listed, so the webhook plugin is too, although it
# has no hook stages: the chain never calls it, the delivery engine calls
# its transport.
pipeline = ["lua.relay", "plugin.aliases", "plugin.lists", "plugin.webhook"]

lua "relay" {
  path     = "../../scripts/relay.lua" # relative to this file
  timeout  = "200ms"
  on_error = "defer"
  params = {
    # An authenticated user may only send as an address of our domains.
    user_domains = { "*" = ["example.test"] }
    # At most 500 transactions an hour from one client IP.
    rate = { limit = 500, per = 3600 }
  }
  match { stage = ["mail"] }
}

plugin "aliases" {
  path     = "bin/gateway-plugin-aliases" # relative to this file
  # sha256 = "…"                          # `sha256sum bin/gateway-plugin-aliases` of the deployed build
  timeout  = "2s"
  on_error = "defer"
  match { stage = ["rcpt"] }
  config {
    aliases_file = "aliases" # relative to this file: plugins run in its folder
    virtual_file = "virtual"
    domain       = "example.test"
  }
}

plugin "lists" {
  path     = "bin/gateway-plugin-lists"
  timeout  = "2s"
  on_error = "defer"
  match {
    stage   = ["rcpt", "data", "command"]
    command = ["RCPT", "VRFY", "EXPN"] # the command stage only for these: no call for every other command
  }
  config {
    lists_dir = "lists"
    domain    = "example.test"
  }
}

plugin "webhook" {
  path = "bin/gateway-plugin-webhook"
  config {
    url     = "http://127.0.0.1:8080/inbound-mail"
    headers = { Authorization = "Bearer change-this-token" }
    timeout = "20s"
  }
}

# examples/lua-routing: the edge gateway of example.test, between an
# internal mail system (addresses @internal.example) and the Internet,
# with its policy in the Lua scripts of ../../scripts:
#
#   aliases.lua    info@ and sales@ forward to people, in and outside the
#                  domain (SRS for what leaves it); a catch-all for the rest
#   relay.lua      authenticated users may only send as their own domains;
#                  a rate limit per client
#   translate.lua  internal.example becomes example.test on the way out,
#                  an internal header is stripped, a gateway header added,
#                  and partner.test is routed to its own next hop
#
# Run it from the repository root:
#
#   go run ./cmd/gateway serve -config examples/lua-routing/gateway.hcl
#
# README.md shows a session; transcript.txt is the conversation the test
# in this folder replays.

hostname = "mx.example.test"
data_dir = "data" # relative to this file: examples/lua-routing/data

listener "mx" {
  address       = "127.0.0.1:2530"
  auth_insecure = true # AUTH without STARTTLS: loopback only, for the example
}

domains = ["example.test"]

# No built-in relay networks: anonymous clients may send only to
# example.test (and to what its aliases forward to). Authenticated users may
# relay, as their own domains (relay.lua's user_domains).
relay {
  networks      = []
  authenticated = true
}

# alice's password is "password".
auth {
  users = { alice = "$2a$10$FOVRKS.3rivPOn07Be/o8uZQJjVwzDFToRf5zv4heHJrYeFV.1pV." }
}

delivery {
  retry = ["10s", "1m"]

  # Local mail ends up in Maildirs: examples/lua-routing/data/mail/example.test/<user>/new/.
  route "example.test" {
    transport = "maildir"
    path      = "data/mail"
  }
  # partner.test is routed by translate.lua (127.0.0.1:2626, where
  # `gateway sink --listen 127.0.0.1:2626` can stand in for it); without
  # TLS, as a sink has none.
  route "partner.test" { tls = "none" }
}

# Aliases first: an alias is accepted at RCPT (which ends the rcpt stage),
# then the relay rules, then the translation.
pipeline = ["lua.aliases", "lua.relay", "lua.translate"]

lua "aliases" {
  path     = "../../scripts/aliases.lua"
  timeout  = "200ms"
  on_error = "defer"
  params = {
    aliases = {
      "info@example.test"  = ["alice@example.test", "bob@example.test"]
      "sales@example.test" = ["dave@partner.test"]
      "@example.test"      = ["postmaster@example.test"]
    }
    mailboxes     = ["alice@example.test", "bob@example.test", "postmaster@example.test"]
    local_domains = ["example.test"]
    srs_domain    = "example.test"
    srs_secret    = "change this secret"
  }
  match { stage = ["rcpt", "data"] }
}

lua "relay" {
  path     = "../../scripts/relay.lua"
  timeout  = "200ms"
  on_error = "defer"
  params = {
    user_domains = { alice = ["example.test", "internal.example"] }
    rate         = { limit = 1000, per = 3600 }
  }
  match { stage = ["mail", "rcpt"] }
}

lua "translate" {
  path     = "../../scripts/translate.lua"
  timeout  = "200ms"
  on_error = "defer"
  params = {
    masquerade    = { from = "internal.example", to = "example.test" }
    add_headers   = { "X-Gateway" = "mx.example.test" }
    strip_headers = ["X-Internal-Id"]
    tag_subject   = { match = "*@partner.test", tag = "[partner]" }
    routes        = [{ match = "partner.test", transport = "smtp", via = "127.0.0.1:2626" }]
  }
}

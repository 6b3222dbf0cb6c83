# Every setting, most of them not at their default.
hostname         = "MX1.Example.TEST."
data_dir         = "state"
shutdown_timeout = "1m30s"

log {
  level  = "debug"
  format = "json"
}

listener "mx" {
  address                = "[::1]:25"
  max_message_size       = "50MiB"
  max_recipients         = 500
  max_line_length        = 4096
  max_header_size        = "1MB"
  max_connections        = 200
  max_connections_per_ip = 10
  max_errors             = 5
  bare_line_endings      = "fix"
  auth_required          = false
  auth_insecure          = true
  verify_sender_domain   = true
  max_hops               = 30

  tls {
    cert = "tls/cert.pem"
    key  = "tls/key.pem"
  }

  timeouts {
    command    = "2m"
    data_block = "90s"
    message    = "1d"
  }
}

listener "submission" {
  address       = ":587"
  auth_required = true
  tls {
    cert = "tls/cert.pem"
    key  = "tls/key.pem"
  }
}

listener "test-a" { address = "127.0.0.1:0" }
listener "test-b" { address = "127.0.0.1:0" } # port 0 twice: each gets a free port

domains = ["Example.TEST", "example.org.", "example.test"]

relay {
  networks      = ["127.0.0.0/8", "::1", "10.1.2.3/8", "192.0.2.7", "2001:db8::/32"]
  authenticated = false
}

auth {
  users = {
    "alice" = "$2a$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234"
    bob     = "$2b$12$…"
    carol   = "$2y$04$…"
  }
  auth_failure_limit = 3
  auth_lockout       = "1h"
  auth_failure_delay = "500ms"
}

delivery {
  resolver                   = ["127.0.0.1:5353", "192.0.2.53", "2001:db8::53", "[2001:db8::54]:5353"]
  port                       = 2525
  tls                        = "require"
  max_connections            = 50
  max_connections_per_domain = 5
  retry                      = ["30s", "2m", "10m", "1d"]
  max_lifetime               = "3d"
  delay_warning              = "2h"
  postmaster                 = "Postmaster@Example.TEST"
  connect_timeout            = "10s"
  command_timeout            = "2m"
  dead_host_ttl              = "1m"
  proxy_addresses            = ["203.0.113.25", "2001:db8::25"]
  hold_domains               = ["BK.example.test.", "*.branch.example.test"]
  hold_expires               = false

  route "Example.Test" {
    via = "127.0.0.1:2626"
    tls = "none"
  }
  route "lmtp.example.test" {
    transport = "lmtp"
    via       = "127.0.0.1:24"
  }
  route "socket.example.test" {
    transport = "lmtp"
    path      = "run/lmtp.sock"
  }
  route "plugin.example.test" {
    transport = "my-transport"
  }
  route "example.net" {
    transport = "maildir"
    path      = "mail/example.net"
  }
  route "*" {
    via       = "smarthost.example.org:587"
    transport = "smtp"
  }
  chunking = "always"
}

admin {
  address = "127.0.0.1:8025"
}

inject {
  address = "127.0.0.1:8026"
  token   = "0123456789abcdef0123"
}

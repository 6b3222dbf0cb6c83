# Bad values in delivery, each reported at its own position.
hostname = "mx.example.test"

listener "mx" {
  address  = "127.0.0.1:2525"
  max_hops = 0
  verify_sender_domain = "yes"
}

delivery {
  resolver                   = ["127.0.0.1:5353", "dns.example.test:53", "127.0.0.1:0", "nope"]
  port                       = 70000
  max_connections            = 0
  max_connections_per_domain = -1
  postmaster                 = "postmaster"
  connect_timeout            = "0s"
  dead_host_ttl              = "-5s"
  proxy_addresses            = ["203.0.113.25", "203.0.113.0/24", "mx.example.test"]
  hold_domains               = ["bk.test", ".bk.test", "*.ok.test", "bad_domain.test", "*.*.test"]
  tls_sessions               = 2000000
}

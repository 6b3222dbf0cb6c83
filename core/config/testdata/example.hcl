hostname = "mx.example.test"
data_dir = "/tmp/gw-data"

listener "mx" {
  address          = "127.0.0.1:2525"
  max_message_size = "25MB"
  max_recipients   = 100
  # tls { cert = "…" key = "…" }      STARTTLS on this listener
  # auth_required = true             submission-style listener
}

domains = ["example.test"]            # mail for these domains is accepted from anyone

relay {
  networks      = ["127.0.0.0/8"]     # clients in these networks may relay to any domain
  authenticated = true                # authenticated clients may relay (the default)
}

auth {
  users = { "alice" = "$2a$10$…" }    # bcrypt hashes; until hooks take over authentication
}

delivery {
  route "example.test" { via = "127.0.0.1:2626" }   # static next hop (used by the delivery issue)
}

admin { address = "127.0.0.1:8025" }

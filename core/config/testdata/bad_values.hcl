# Several bad values at once: every one is reported, in file order.
hostname = "mx_1.example.test"
data_dir = ""

log {
  level  = "verbose"
  format = "json"
}

listener "mx" {
  address         = "localhost"
  max_line_length = 100
  max_connections = 0
  auth_required   = "sometimes"
}

listener "bad name" { address = "127.0.0.1:70000" }

domains = ["example.test", "-bad.example", "192.0.2.1", "exämple.test"]

auth {
  users = {
    alice = "secret"
    bob   = "$2a$10$…"
    "bob" = "$2b$10$…"
  }
}

delivery {
  route "example..test" { via = "127.0.0.1:2626" }
  route "*" { via = "smarthost.example.org" }
  route "*" { via = "127.0.0.1:0" }
}

admin {}

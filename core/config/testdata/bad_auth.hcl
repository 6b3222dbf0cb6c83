listener "mx" {
  address = "127.0.0.1:2525"
}

auth {
  users              = { alice = "$2a$10$…" }
  auth_failure_limit = -1
  auth_lockout       = "0s"
  auth_failure_delay = "2m"
}

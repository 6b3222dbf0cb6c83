listener "mx" {
  address = "127.0.0.1:2525"
}

auth {
  auth_failure_limit = "five"
  auth_lockout       = 900
  auth_failure_delay = "-1s"
}

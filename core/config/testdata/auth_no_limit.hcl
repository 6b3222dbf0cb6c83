# auth_failure_limit = 0 counts no failures; no delay either. The users
# may be left out: hooks can decide AUTH on their own.
listener "mx" {
  address = "127.0.0.1:2525"
}

auth {
  auth_failure_limit = 0
  auth_failure_delay = "0s"
}

listener "mx" {
  address = "127.0.0.1:2525"
}

delivery {
  route "*" {
    via = "smtp.provider.test:587"
    tls = "require"
    auth {
      username      = "gw@example.test"
      password_file = "secrets/smarthost.pass"
    }
  }
  route "inline.test" {
    via = "relay.inline.test:25"
    auth {
      username = "inline"
      password = "pw"
    }
  }
}

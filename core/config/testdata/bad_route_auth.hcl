listener "mx" {
  address = "127.0.0.1:2525"
}

delivery {
  route "both.test" {
    via = "relay.test:25"
    auth {
      username      = "u"
      password      = "p"
      password_file = "secrets/smarthost.pass"
    }
  }
  route "nouser.test" {
    via = "relay.test:25"
    auth {
      password = "p"
    }
  }
  route "empty.test" {
    via = "relay.test:25"
    auth {
      username = ""
      password = ""
    }
  }
  route "maildir.test" {
    transport = "maildir"
    path      = "mail"
    auth {
      username = "u"
      password = "p"
    }
  }
  route "mx.test" {
    auth {
      username = "u"
      password = "p"
    }
  }
  route "opportunistic.test" {
    via = "relay.test:25"
    tls = "opportunistic"
    auth {
      username = "u"
      password = "p"
    }
  }
  route "encrypt.test" {
    via = "relay.test:25"
    tls = "encrypt"
    auth {
      username = "u"
      password = "p"
    }
  }
}

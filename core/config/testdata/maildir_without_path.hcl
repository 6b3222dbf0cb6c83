# Each built-in transport checks its arguments.
hostname = "mx.example.test"

listener "mx" { address = "127.0.0.1:2525" }

delivery {
  route "example.test" {
    transport = "maildir"
  }
  route "via.example.test" {
    transport = "maildir"
    path      = "mail"
    via       = "127.0.0.1:2626"
    tls       = "require"
  }
  route "lmtp.example.test" {
    transport = "lmtp"
  }
  route "both.example.test" {
    transport = "lmtp"
    via       = "127.0.0.1:24"
    path      = "lmtp.sock"
  }
  route "smtp.example.test" {
    path = "mail"
  }
  route "bad.example.test" {
    transport = "Maildir"
    path      = "mail"
  }
}

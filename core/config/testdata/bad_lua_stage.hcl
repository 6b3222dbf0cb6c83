hostname = "mx.example.test"
listener "mx" { address = "127.0.0.1:0" }

lua "relay" {
  path = "scripts/relay.lua"
  match {
    stage            = ["rcpt", "RCPT", "queue"]
    client           = ["10.0.0.0/33"]
    sender_domain    = ["*.", "ex ample.com"]
    recipient_domain = "example.test"
    command          = ["RCPT", "MAIL FROM"]
  }
}

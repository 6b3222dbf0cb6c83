listener "mx" {
  address = "127.0.0.1:2525"
}

cluster {
  nats_urls        = ["tls://nats1.example:4222", "tls://nats2.example"]
  replicas         = 5
  credentials_file = "secrets/smarthost.pass"
  takeover_after   = "2m"
  tls {
    ca   = "tls/cert.pem"
    cert = "tls/cert.pem"
    key  = "tls/key.pem"
  }
}

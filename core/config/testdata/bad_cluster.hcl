listener "mx" {
  address = "127.0.0.1:2525"
}

cluster {
  node             = "gw 1"
  nats_urls        = ["nats://127.0.0.1:4222", "http://127.0.0.1:4223", "nats://:4224", "nats://h:0", "nats://127.0.0.1:4222", "nats://h/x"]
  replicas         = 7
  credentials_file = "missing.creds"
  takeover_after   = "0s"
  tls {
    cert = "tls/cert.pem"
  }
}

hostname = "mx.example.test"

listener "mx" {
  address = "127.0.0.1:2525"
  tls {
    cert = "tls/cert.pem"
    key  = "tls/missing-key.pem"
  }
}

listener "other" {
  address = "127.0.0.1:2526"
  tls {
    cert = "tls"
  }
}

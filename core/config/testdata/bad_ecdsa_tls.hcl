hostname = "mx.example.test"

listener "mx" {
  address = "127.0.0.1:2525"
  tls {
    cert       = "tls/cert.pem"
    key        = "tls/key.pem"
    ecdsa_cert = "tls/cert.pem"
  }
}

listener "other" {
  address = "127.0.0.1:2526"
  tls {
    cert      = "tls/cert.pem"
    key       = "tls/key.pem"
    ecdsa_key = "tls/missing-key.pem"
  }
}

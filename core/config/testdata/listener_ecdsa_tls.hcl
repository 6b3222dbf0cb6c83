# A listener with an ECDSA certificate beside its RSA one (the files of
# testdata/tls stand in for both here: only LoadTLS reads their keys).
hostname = "mx.example.test"

listener "mx" {
  address = "0.0.0.0:25"
  tls {
    cert       = "tls/cert.pem"
    key        = "tls/key.pem"
    ecdsa_cert = "tls/cert.pem"
    ecdsa_key  = "tls/key.pem"
  }
}

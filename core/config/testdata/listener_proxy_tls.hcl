# The issue's listeners (the tls block on several lines: HCL's one-line
# block holds one argument), with the certificate of testdata/tls.
hostname = "mx.example.test"

listener "mx" {
  address        = "0.0.0.0:25"
  proxy_protocol = ["10.0.0.5/32"]
}
listener "smtps" {
  address = "0.0.0.0:465"
  tls {
    cert     = "tls/cert.pem"
    key      = "tls/key.pem"
    implicit = true
  }
  auth_required = true
}

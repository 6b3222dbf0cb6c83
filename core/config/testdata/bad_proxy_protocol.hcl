# proxy_protocol takes networks, but never all of them; implicit is a bool.
hostname = "mx.example.test"

listener "mx" {
  address        = "127.0.0.1:2525"
  proxy_protocol = ["10.0.0.5/32", "10.0.0.0/33", "0.0.0.0/0", "::/0"]
}

listener "one" {
  address        = "127.0.0.1:2526"
  proxy_protocol = "10.0.0.5"
}

listener "smtps" {
  address = "127.0.0.1:2465"
  tls {
    cert     = "tls/cert.pem"
    key      = "tls/key.pem"
    implicit = "sometimes"
  }
}

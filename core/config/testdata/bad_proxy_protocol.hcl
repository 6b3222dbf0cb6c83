# proxy_protocol takes networks, none wider than a /8 (IPv4) or a /32
# (IPv6), not even in halves; implicit is a bool.
hostname = "mx.example.test"

listener "mx" {
  address        = "127.0.0.1:2525"
  proxy_protocol = ["10.0.0.5/32", "10.0.0.0/33", "0.0.0.0/0", "::/0", "0.0.0.0/1", "128.0.0.0/1",
    "10.0.0.0/8", "10.0.0.0/7", "2001:db8::/32", "2001:db8::/31", "::ffff:0.0.0.0/97", "::ffff:10.0.0.0/104"]
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

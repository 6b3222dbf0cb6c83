listener "mx" { address = "127.0.0.1:0" }
authentication {
  arc_seal = "rsa.test"
}
dkim "rsa.test" {
  selector = "s1"
  key_file = "dkim/rsa1024_pkcs1.pem"
}

listener "mx" { address = "127.0.0.1:0" }
authentication {
  arc      = true
  arc_seal = "ed.test"
}
dkim "ed.test" {
  selector = "s1"
  key_file = "dkim/ed25519.pem"
}

listener "mx" {
  address = "127.0.0.1:2525"
}

dkim "not a domain" {
  selector = "s1"
  key_file = "dkim/ed25519.pem"
}

dkim "example.test" {
  selector = "s1"
  key_file = "dkim/ed25519.pem"
}

dkim "EXAMPLE.test" {
  selector = "s2"
  key_file = "dkim/ed25519.pem"
}

dkim "missing.test" {
}

dkim "short.test" {
  selector = "bad selector"
  key_file = "dkim/rsa512.pem"
}

dkim "ecdsa.test" {
  selector = "s1"
  key_file = "dkim/ecdsa.pem"
}

dkim "garbage.test" {
  selector = "s1"
  key_file = "dkim/garbage.pem"
}

dkim "nofile.test" {
  selector = "s1"
  key_file = "dkim/nope.pem"
}

dkim "headers.test" {
  selector = "s1"
  key_file = "dkim/ed25519.pem"
  headers  = ["To", "to", "Bad:Name"]
}

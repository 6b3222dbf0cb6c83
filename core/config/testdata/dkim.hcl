listener "mx" {
  address = "127.0.0.1:2525"
}

dkim "example.test" {
  selector = "s1"
  key_file = "dkim/rsa1024_pkcs1.pem"
}

dkim "Mail.Example.Test." {
  selector = "ED.2026"
  key_file = "dkim/ed25519.pem"
  headers  = ["From", "To", "Subject", "Date", "List-Id"]
}

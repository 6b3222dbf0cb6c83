# The issue's authentication block, exactly.
hostname = "mx.example.test"
listener "mx" { address = "127.0.0.1:0" }

authentication {
  spf         = true             # RFC 7208, with its DNS limits (10 look-ups, 2 void look-ups)
  dkim        = true             # verify every DKIM-Signature (RFC 6376), rsa-sha256 and ed25519-sha256 (RFC 8463)
  dmarc       = "enforce"        # "off" | "report": results in headers only | "enforce": p=reject → 550 5.7.1, p=quarantine → see below
  arc         = true             # verify an incoming ARC chain; seal mail we forward (aliases, lists) with arc_seal's key
  arc_seal    = "example.test"   # the dkim block whose key seals ARC sets; no sealing when absent
  authserv_id = "mx.example.test" # default: hostname
}

dkim "example.test" {
  selector = "s1"
  key_file = "dkim/rsa1024_pkcs1.pem"
}

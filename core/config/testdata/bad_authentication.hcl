listener "mx" { address = "127.0.0.1:0" }
authentication {
  spf         = "yes"
  dkim        = false
  dmarc       = "strict"
  arc         = 1
  arc_seal    = "not a domain"
  authserv_id = ""
}

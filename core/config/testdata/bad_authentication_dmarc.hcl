listener "mx" { address = "127.0.0.1:0" }
authentication {
  spf   = false
  dkim  = false
  dmarc = "enforce"
}

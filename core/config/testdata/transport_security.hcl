# The transport-security issue's delivery block (tls_ca_file points at a
# PEM file that exists here).
hostname = "mx.example.test"
listener "mx" { address = "127.0.0.1:0" }

delivery {
  mta_sts     = true          # honour MTA-STS policies; default true
  dane        = true          # honour DANE TLSA records; default true; needs a DNSSEC-validating resolver (the AD bit)
  tls_ca_file = "tls/cert.pem" # extra trust anchors for verified TLS (private CAs, tests); default: system roots only
  tls_reports {               # send TLS-RPT aggregate reports (RFC 8460); default: off
    from         = "tlsrpt@example.test"
    organization = "Example Org"
  }
}

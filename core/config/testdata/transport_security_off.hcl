# MTA-STS and DANE off; tls_reports without an organization takes the
# sender's domain.
hostname = "mx.example.test"
listener "mx" { address = "127.0.0.1:0" }

delivery {
  mta_sts = false
  dane    = false
  tls_reports { from = "TLSRPT@Example.TEST" }
}

hostname = "mx.example.test"
listener "mx" { address = "127.0.0.1:0" }

delivery {
  tls_ca_file = "no-such-ca.pem"
  mta_sts     = "yes please"
  tls_reports { organization = "Example Org" }
}

hostname = "mx.example.test"

listener "mx" {
  address = "127.0.0.1:2525"
}

delivery {
  tls_sessions = -1
}

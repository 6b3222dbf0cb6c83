hostname = "mx.example.test"

listener "mx" { address = "127.0.0.1:2525" }

relay {
  networks = [
    "127.0.0.0/8",
    "10.0.0.0/33",
    "localhost",
  ]
}

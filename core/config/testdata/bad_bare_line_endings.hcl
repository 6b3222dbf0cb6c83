hostname = "mx.example.test"

listener "mx" {
  address           = "127.0.0.1:2525"
  bare_line_endings = "accept"
}

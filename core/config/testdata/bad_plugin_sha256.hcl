hostname = "mx.example.test"
listener "mx" { address = "127.0.0.1:0" }

plugin "short" {
  path   = "bin/gateway-plugin-aliases"
  sha256 = "e3b0c442"
}
plugin "nothex" {
  path   = "bin/gateway-plugin-aliases"
  sha256 = "z3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
}
plugin "number" {
  path   = "bin/gateway-plugin-aliases"
  sha256 = 42
}

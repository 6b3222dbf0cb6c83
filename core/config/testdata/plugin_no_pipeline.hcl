# Without a pipeline, lua and plugin blocks run in the order of the file.
hostname = "mx.example.test"
listener "mx" { address = "127.0.0.1:0" }

plugin "b" { path = "bin/gateway-plugin-aliases" }
lua "a" { path = "scripts/relay.lua" }
plugin "c" {
  path = "bin/gateway-plugin-aliases"
  config {}
}

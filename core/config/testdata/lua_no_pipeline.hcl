# Without a pipeline the hooks run in the order of their blocks.
hostname = "mx.example.test"
listener "mx" { address = "127.0.0.1:0" }

lua "b" { path = "scripts/relay.lua" }
lua "a" {
  path = "scripts/lists.lua"
  match { authenticated = true }
}

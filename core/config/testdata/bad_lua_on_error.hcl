hostname = "mx.example.test"
listener "mx" { address = "127.0.0.1:0" }

lua "relay" {
  path       = "scripts/relay.lua"
  on_error   = "accept"
  timeout    = "0s"
  params     = ["not", "an", "object"]
  max_memory = "512KB"
}
lua "relay" { path = "scripts/lists.lua" }
lua "bad.name" {
  path = "scripts/lists.lua"
}
lua "nulls" {
  path   = "scripts/lists.lua"
  params = { ok = null, list = [1, [null]] }
}

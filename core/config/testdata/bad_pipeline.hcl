hostname = "mx.example.test"
listener "mx" { address = "127.0.0.1:0" }

pipeline = ["lua.relay", "lua.rely", "plugin.aliases", "relay", "lua.relay"]

lua "relay" { path = "scripts/relay.lua" }
lua "lists" { path = "scripts/lists.lua" }

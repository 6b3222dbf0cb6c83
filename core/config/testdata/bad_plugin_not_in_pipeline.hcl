hostname = "mx.example.test"
listener "mx" { address = "127.0.0.1:0" }

pipeline = ["lua.relay", "plugin.aliases", "plugin.nosuch"]

lua "relay" { path = "scripts/relay.lua" }
plugin "aliases" { path = "bin/gateway-plugin-aliases" }
plugin "lists" { path = "bin/gateway-plugin-aliases" }
plugin "aliases" { path = "bin/gateway-plugin-aliases" }
plugin "bad.name" { path = "bin/gateway-plugin-aliases" }

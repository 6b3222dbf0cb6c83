hostname = "mx.example.test"

log { level = "info" }
log { level = "debug" }

listener "mx" { address = "127.0.0.1:2525" }

relay = { networks = ["127.0.0.0/8"] }

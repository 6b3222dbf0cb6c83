hostname = "mx.example.test"
listener "mx" { address = "127.0.0.1:0" }

pipeline = ["lua.relay"]

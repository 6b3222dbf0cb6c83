hostname = "mx.example.test"

listener "mx" { address = "127.0.0.1:2525" }
listener "submission" { address = "127.0.0.1:02525" }

admin { address = "127.0.0.1:2525" }

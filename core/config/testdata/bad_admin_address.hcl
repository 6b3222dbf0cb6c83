hostname = "mx.example.test"
listener "mx" { address = "127.0.0.1:0" }
admin { address = "0.0.0.0:8025" }

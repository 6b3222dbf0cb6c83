hostname = "mx.example.test"
hostnme  = "typo.example.test"

listener "mx" { address = "127.0.0.1:2525" }

queues { }

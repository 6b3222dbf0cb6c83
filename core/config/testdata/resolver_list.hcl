# resolver as a list, duplicates (after normalization) dropped.
hostname = "mx.example.test"

listener "mx" { address = "127.0.0.1:2525" }

delivery {
  resolver = ["127.0.0.1:5353", "::1", "192.0.2.53:053", "192.0.2.53"]
}

# retry needs at least one wait; it is a list, not a single duration.
hostname = "mx.example.test"

listener "mx" { address = "127.0.0.1:2525" }

delivery {
  retry        = []
  max_lifetime = "0s"
}

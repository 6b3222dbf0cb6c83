# tls is "none", "opportunistic" or "require", in delivery and in a route;
# chunking is "binarymime" or "always".
hostname = "mx.example.test"

listener "mx" { address = "127.0.0.1:2525" }

delivery {
  tls = "always"
  chunking = "yes"
  route "example.test" {
    via = "127.0.0.1:2626"
    tls = "Require"
  }
  route "example.org" {
    via = "127.0.0.1:2627"
    tls = ""
  }
}

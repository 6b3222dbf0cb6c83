hostname = "mx.example.test"

listener "mx" { address = "127.0.0.1:2525" }

delivery {
  resolver   = { primary = "127.0.0.1" }
  postmaster = "bounces@[192.0.2.1]"
  port       = 0
}

listener "mx" { address = "127.0.0.1:0" }
authentication {
  arc      = true
  arc_seal = "nowhere.test"
}

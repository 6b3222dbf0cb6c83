# resolver as one string: a bare IP address gets port 53. delay_warning
# "0" turns the delay notice off; the rest of delivery keeps its defaults.
hostname = "mx.example.test"

listener "mx" { address = "127.0.0.1:2525" }

delivery {
  resolver      = "192.0.2.53"
  delay_warning = "0"
}

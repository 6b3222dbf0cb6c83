hostname = "mx.example.test"
listener "mx" { address = "127.0.0.1:0" }

plugin "missing" {
  path = "bin/gateway-plugin-missing"
}
plugin "folder" {
  path = "bin"
}
plugin "notexec" {
  path = "bin/not-executable"
}
plugin "nopath" {
  timeout  = "1s"
  on_error = "drop"
}
plugin "badconfig" {
  path = "bin/gateway-plugin-aliases"
  config {
    nested { x = 1 }
  }
}

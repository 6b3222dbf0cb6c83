hostname = "mx.example.test"
listener "mx" { address = "127.0.0.1:0" }

lua "relay" {
  path = "scripts/missing.lua"
}
lua "folder" {
  path = "scripts"
}
lua "nopath" {
  timeout = "1s"
}

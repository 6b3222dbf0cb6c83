listener "mx" {
  address = "127.0.0.1:2525"
}

inject {
  address    = "127.0.0.1:8026"
  token      = "short"
}

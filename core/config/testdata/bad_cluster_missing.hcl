listener "mx" {
  address = "127.0.0.1:2525"
}

cluster {
  replicas = 0
}

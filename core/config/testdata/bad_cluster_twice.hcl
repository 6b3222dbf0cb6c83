listener "mx" {
  address = "127.0.0.1:2525"
}

cluster {
  nats_urls = []
}

cluster {
  nats_urls = ["nats://127.0.0.1:4222"]
}

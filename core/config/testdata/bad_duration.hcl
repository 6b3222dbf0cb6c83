hostname         = "mx.example.test"
shutdown_timeout = "30"

listener "mx" {
  address = "127.0.0.1:2525"
  timeouts {
    command    = "5 minutes"
    data_block = "0s"
    message    = "1.5d"
  }
}

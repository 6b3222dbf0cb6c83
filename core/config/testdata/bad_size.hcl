hostname = "mx.example.test"

listener "mx" {
  address          = "127.0.0.1:2525"
  max_message_size = "25XB"
  max_header_size  = "1.5MB"
}

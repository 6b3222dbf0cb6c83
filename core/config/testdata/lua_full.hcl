# Two lua blocks, every setting of one, a match block and params of every type.
hostname = "mx.example.test"
listener "mx" { address = "127.0.0.1:0" }

pipeline = ["lua.lists", "lua.relay"] # not the file order

lua "relay" {
  path       = "scripts/relay.lua"
  timeout    = "200ms"
  on_error   = "continue"
  max_memory = "16MB"
  params = {
    allow    = ["10.0.0.0/8", "192.0.2.1"]
    limit    = 100
    ratio    = 0.25
    big      = 1e3
    enabled  = true
    name     = "relay"
    nothing  = null # left out
    nested   = { deep = { list = [1, "two", false] }, "quoted key" = -7 }
    empty    = {}
    none     = []
  }
  match {
    stage            = ["rcpt", "data", "rcpt"]
    client           = ["10.0.0.0/8", "2001:db8::1"]
    sender_domain    = ["Example.COM.", "*.example.org"]
    recipient_domain = ["example.test"]
    authenticated    = false
  }
}

lua "lists" {
  path = "scripts/lists.lua"
}

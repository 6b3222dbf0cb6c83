// Command gateway-plugin-webhook is a transport that delivers each message
// as a JSON document by HTTP POST.
package main

import "github.com/mailgate/gateway/sdk"

func main() { sdk.Serve(New()) }

// Command gateway-plugin-greylist is a greylisting plugin for the mail
// gateway, written in a module of its own: the example of
// examples/plugin-from-scratch/README.md.
package main

import "github.com/mailgate/gateway/sdk"

func main() { sdk.Serve(New()) }

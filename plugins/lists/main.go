// Command gateway-plugin-lists expands mailing lists and marks their
// messages with the List-* header fields.
package main

import "github.com/mailgate/gateway/sdk"

func main() { sdk.Serve(New()) }

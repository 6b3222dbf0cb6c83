// Command gateway-plugin-aliases forwards mail for the aliases of Postfix
// aliases(5) and virtual(5) files.
package main

import "github.com/mailgate/gateway/sdk"

func main() { sdk.Serve(New()) }

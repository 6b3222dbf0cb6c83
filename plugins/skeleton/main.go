// Command gateway-plugin-skeleton is the template for new plugins: copy
// the folder, rename, and keep main exactly this.
package main

import "github.com/mailgate/gateway/sdk"

func main() { sdk.Serve(New()) }

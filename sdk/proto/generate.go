// Package proto holds the plugin wire contract (gateway/v1/plugin.proto).
// The generated Go code lives in sdk/internal/pb; regenerate it from this
// directory with `go generate` (see sdk/README.md, "Regenerating the
// protocol").
package proto

//go:generate protoc -I . --go_out=.. --go_opt=module=github.com/mailgate/gateway/sdk --go-grpc_out=.. --go-grpc_opt=module=github.com/mailgate/gateway/sdk gateway/v1/plugin.proto

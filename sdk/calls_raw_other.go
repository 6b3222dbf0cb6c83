//go:build !linux

package sdk

import "net"

// channelOf returns conn itself: the quieter channel (calls_raw_linux.go)
// needs epoll.
func channelOf(conn net.Conn) channel { return conn }

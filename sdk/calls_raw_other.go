//go:build !unix

package sdk

import (
	"io"
	"net"
)

// channelIO returns conn's reader and writer: a call channel is a Unix
// socket pair, which this platform does not have, so conn itself.
func channelIO(conn net.Conn) (io.Reader, io.Writer) { return conn, conn }

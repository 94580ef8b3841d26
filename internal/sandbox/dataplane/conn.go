package dataplane

import (
	"net"
	"sync"
	"sync/atomic"
)

// meteredConn is the client's end of an allowed connection. It counts the
// bytes that really cross it, because ztunnel's bytes_sent/bytes_recv are
// evidence a lab may check, and reports them once when the client closes it:
// ztunnel writes "connection complete" when the connection ends.
type meteredConn struct {
	net.Conn
	sent, recv atomic.Int64
	once       sync.Once
	onClose    func(sent, recv int64)
}

func newMeteredConn(c net.Conn, onClose func(sent, recv int64)) *meteredConn {
	return &meteredConn{Conn: c, onClose: onClose}
}

// Read counts what the client receives.
func (c *meteredConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.recv.Add(int64(n))
	return n, err
}

// Write counts what the client sends.
func (c *meteredConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.sent.Add(int64(n))
	return n, err
}

// Close closes the connection and reports it exactly once, however often and
// from however many goroutines it is called.
func (c *meteredConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.onClose(c.sent.Load(), c.recv.Load()) })
	return err
}

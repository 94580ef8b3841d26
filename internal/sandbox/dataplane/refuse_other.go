//go:build !unix

package dataplane

import "net"

// refuser holds a loopback port that refuses connections. Without a portable
// way to bind a socket that never listens, it uses a port whose listener was
// closed; another program could take it meanwhile, which is unlikely.
type refuser struct{ address string }

func reservePort() (*refuser, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &refuser{address: ln.Addr().String()}
	return r, ln.Close()
}

func (r *refuser) addr() string { return r.address }

func (r *refuser) close() error { return nil }

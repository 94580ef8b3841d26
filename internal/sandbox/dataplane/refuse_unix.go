//go:build unix

package dataplane

import (
	"fmt"
	"net"
	"strconv"
	"syscall"
)

// refuser holds a loopback port that refuses connections. The socket is bound
// but never listens, so the kernel answers every SYN with RST (a real
// ECONNREFUSED), and while it stays bound no other listener can take the port.
type refuser struct {
	fd   int
	port int
}

func reservePort() (*refuser, error) {
	// ForkLock keeps a concurrent fork from inheriting the descriptor before
	// it is marked close-on-exec, as the net package does.
	syscall.ForkLock.RLock()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("dataplane: reserving a refused port: %w", err)
	}
	port, err := bindLoopback(fd)
	if err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("dataplane: reserving a refused port: %w", err)
	}
	return &refuser{fd: fd, port: port}, nil
}

func bindLoopback(fd int) (int, error) {
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return 0, err
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return 0, err
	}
	in4, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		return 0, fmt.Errorf("unexpected socket address %T", sa)
	}
	return in4.Port, nil
}

func (r *refuser) addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
}

func (r *refuser) close() error {
	return syscall.Close(r.fd)
}

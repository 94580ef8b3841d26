package dataplane

import (
	"errors"
	"net"
	"sync"
	"time"
)

// resetWait bounds how long the resetter waits for a client that sends
// nothing before resetting it anyway.
const resetWait = 250 * time.Millisecond

// resetter accepts connections and resets them (SO_LINGER 0 makes close send
// RST instead of FIN), which is how ztunnel ends an application connection
// that policy refuses: the client sees a genuine ECONNRESET, curl's 56
// "Recv failure" (ISTIO-FACTS.md, "What a client sees").
//
// It resets only once the client has sent its request, as ztunnel does: it
// first accepts the application's connection and only answers after its
// HBONE CONNECT to the destination got the 401. Resetting at once would make
// the client's connect(2) itself fail, which is not what a client in a
// cluster sees.
type resetter struct {
	ln    *net.TCPListener
	done  chan struct{}
	conns sync.WaitGroup

	mu      sync.Mutex
	pending map[*net.TCPConn]struct{}
	closed  bool
}

func startResetter() (*resetter, error) {
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	r := &resetter{ln: ln, done: make(chan struct{}), pending: map[*net.TCPConn]struct{}{}}
	go r.run()
	return r, nil
}

func (r *resetter) addr() string { return r.ln.Addr().String() }

func (r *resetter) run() {
	defer close(r.done)
	for {
		c, err := r.ln.AcceptTCP()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of file descriptors and the like: back off instead of
			// spinning, as net/http's Serve does.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if r.track(c) {
			go r.reset(c)
		}
	}
}

// track registers c so close can cut its wait short; it resets c at once
// when the resetter is already closing.
func (r *resetter) track(c *net.TCPConn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		abort(c)
		return false
	}
	r.pending[c] = struct{}{}
	r.conns.Add(1)
	return true
}

// reset waits for the client's first bytes (or resetWait), then resets.
func (r *resetter) reset(c *net.TCPConn) {
	defer r.conns.Done()
	_ = c.SetReadDeadline(time.Now().Add(resetWait))
	var buf [512]byte
	_, _ = c.Read(buf[:]) // any outcome ends the wait
	r.mu.Lock()
	delete(r.pending, c)
	r.mu.Unlock()
	abort(c)
}

// abort closes c with RST.
func abort(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}

// close stops the listener, resets waiting connections and waits for every
// goroutine to end.
func (r *resetter) close() error {
	err := r.ln.Close()
	<-r.done
	r.mu.Lock()
	r.closed = true
	for c := range r.pending {
		_ = c.SetReadDeadline(time.Now()) // wakes its reset goroutine
	}
	r.mu.Unlock()
	r.conns.Wait()
	return err
}

package kubelet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server is the kubelet API on 127.0.0.1 over TLS, serving a LogStore.
type Server struct {
	store *LogStore

	mu       sync.Mutex
	srv      *http.Server
	addr     *net.TCPAddr
	certPEM  []byte
	done     chan struct{}
	closed   bool
	conns    map[net.Conn]struct{}
	active   sync.WaitGroup // one per open connection; its goroutine runs the handlers
	serveErr chan error
}

// NewServer returns a server for the store; call Start to listen.
func NewServer(store *LogStore) *Server {
	return &Server{store: store, done: make(chan struct{}), conns: map[net.Conn]struct{}{}}
}

// Start listens on a free loopback port with a freshly generated self-signed certificate and serves in the
// background. The API server does not verify kubelet certificates unless it runs with
// --kubelet-certificate-authority, in which case pass it CertificatePEM.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil || s.closed {
		return errors.New("kubelet server: already started or closed")
	}
	cert, certPEM, err := selfSignedCert(time.Now())
	if err != nil {
		return fmt.Errorf("kubelet server certificate: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("kubelet server: %w", err)
	}
	s.srv = s.newHTTPServer(cert)
	s.addr, s.certPEM = ln.Addr().(*net.TCPAddr), certPEM
	s.serveErr = make(chan error, 1)
	go func() { s.serveErr <- s.srv.ServeTLS(ln, "", "") }()
	return nil
}

// newHTTPServer speaks HTTP/1.1 only: each connection is then one goroutine that ConnState tracks, which is
// what lets Close wait until nothing of the server runs any more.
func (s *Server) newHTTPServer(cert tls.Certificate) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	return &http.Server{
		Handler:           newMux(s.store, s.done),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		Protocols:         &protocols,
		ConnState:         s.trackConn,
		ReadHeaderTimeout: 30 * time.Second,
	}
}

// trackConn counts connections from accept to close. StateNew runs on the Serve goroutine, so once Serve has
// returned no count can be added, and Close may wait on the group.
func (s *Server) trackConn(c net.Conn, state http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch state {
	case http.StateNew:
		s.active.Add(1)
		s.conns[c] = struct{}{}
		if s.closed {
			// Accepted while Close ran: http.Server.Close may have missed it.
			c.Close()
		}
	case http.StateClosed, http.StateHijacked:
		if _, ok := s.conns[c]; ok {
			delete(s.conns, c)
			s.active.Done()
		}
	}
}

// Port is the TCP port the server listens on, for node.status.daemonEndpoints.kubeletEndpoint.port; 0 before Start.
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.addr == nil {
		return 0
	}
	return s.addr.Port
}

// CertificatePEM is the server's self-signed certificate, which is its own CA; nil before Start.
func (s *Server) CertificatePEM() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.certPEM
}

// Close stops the server, ends follow streams and returns once no goroutine of the server is left.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Close()
	if serveErr := <-s.serveErr; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	s.closeConns()
	s.active.Wait()
	return err
}

// closeConns closes connections that http.Server.Close did not know of yet.
func (s *Server) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

// selfSignedCert makes an ECDSA P-256 certificate for 127.0.0.1 and localhost, valid for a year. It is its own
// CA so that clients (Go, curl, the API server's --kubelet-certificate-authority) can trust it directly.
func selfSignedCert(now time.Time) (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "sandbox-kubelet"},
		NotBefore:             now.Add(-time.Hour), // tolerate clock skew between processes
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, certPEM, nil
}

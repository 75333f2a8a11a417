package tlsterm

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// recordTypeHandshake is the first byte of every TLS connection: a TLS
// record of type handshake carrying the ClientHello. No HTTP/1.x request
// line and no HTTP/2 preface starts with it (0x16 is a control character).
const recordTypeHandshake = 0x16

// Listener serves plain and TLS connections on one socket: it reads the
// first byte of each connection and hands the server either the
// connection as it is (HTTP) or a *tls.Conn around it (net/http then does
// the handshake and sets Request.TLS). A load balancer may therefore speak
// HTTP or HTTPS to the same port, and a Gateway listener port serves
// whichever protocol its listeners declare, without a restart.
//
// The first byte is awaited on a goroutine of the connection's own, never
// in Accept: a client that connects and sends nothing holds no other
// connection back, and is closed after the first-byte timeout.
type Listener struct {
	inner     net.Listener
	config    *tls.Config
	timeout   time.Duration
	accepted  chan net.Conn
	errs      chan error
	done      chan struct{}
	startOnce sync.Once
	closeOnce sync.Once
	conns     *prometheus.CounterVec
}

// NewListener wraps l; nothing is accepted before the first Accept. config is used for the connections that start a
// TLS handshake (its GetCertificate picks the certificate); firstByte
// bounds the wait for a connection's first byte. conns, when not nil,
// counts connections by protocol ("http", "tls") and those closed before
// sending anything ("silent").
func NewListener(l net.Listener, config *tls.Config, firstByte time.Duration, conns *prometheus.CounterVec) *Listener {
	s := &Listener{inner: l, config: config, timeout: firstByte, accepted: make(chan net.Conn),
		errs: make(chan error, 1), done: make(chan struct{}), conns: conns}
	return s
}

func (s *Listener) acceptLoop() {
	for {
		c, err := s.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // a transient accept failure; net/http would retry too
			}
			select {
			case s.errs <- err:
			case <-s.done:
			}
			return
		}
		go s.classify(c)
	}
}

func (s *Listener) classify(c net.Conn) {
	var first [1]byte
	c.SetReadDeadline(time.Now().Add(s.timeout))
	if _, err := io.ReadFull(c, first[:]); err != nil {
		s.count("silent")
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	var out net.Conn = &peekedConn{Conn: c, first: first[0], pending: true}
	if first[0] == recordTypeHandshake {
		out = tls.Server(out, s.config)
		s.count("tls")
	} else {
		s.count("http")
	}
	select {
	case s.accepted <- out:
	case <-s.done:
		c.Close()
	}
}

func (s *Listener) count(protocol string) {
	if s.conns != nil {
		s.conns.WithLabelValues(protocol).Inc()
	}
}

// Accept returns the next classified connection. Connections are taken
// from the socket only once Accept is first called: until a server serves
// the listener, the kernel queues them.
func (s *Listener) Accept() (net.Conn, error) {
	s.startOnce.Do(func() { go s.acceptLoop() })
	select {
	case c := <-s.accepted:
		return c, nil
	case err := <-s.errs:
		return nil, err
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting; connections being classified are closed.
func (s *Listener) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		err = s.inner.Close()
	})
	return err
}

// Addr is the socket's address.
func (s *Listener) Addr() net.Addr { return s.inner.Addr() }

// peekedConn gives back the byte read to classify the connection before
// anything else.
type peekedConn struct {
	net.Conn
	first   byte
	pending bool // first not read yet; only the server's goroutine reads
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if c.pending && len(p) > 0 {
		// The byte alone: reading more now could wait for data the
		// client sends only after an answer.
		p[0], c.pending = c.first, false
		return 1, nil
	}
	return c.Conn.Read(p)
}

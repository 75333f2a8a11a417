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

// Protocols counted by NewListener's conns: plain HTTP/1.x, HTTP/2 with
// prior knowledge (h2c), HTTP/1.1 and HTTP/2 over TLS (as ALPN chose;
// counted once the handshake succeeded), and connections closed before
// their first byte.
const (
	ProtocolHTTP   = "http"
	ProtocolH2C    = "h2c"
	ProtocolHTTPS  = "https"
	ProtocolH2     = "h2"
	ProtocolSilent = "silent"
)

// NewListener wraps l; nothing is accepted before the first Accept. config
// is used for the connections that start a TLS handshake (its
// GetCertificate picks the certificate; its NextProtos what ALPN may
// choose); firstByte bounds the wait for a connection's first bytes.
// conns, when not nil, counts connections by protocol (ProtocolHTTP and
// the others).
func NewListener(l net.Listener, config *tls.Config, firstByte time.Duration, conns *prometheus.CounterVec) *Listener {
	s := &Listener{inner: l, config: config, timeout: firstByte, accepted: make(chan net.Conn),
		errs: make(chan error, 1), done: make(chan struct{}), conns: conns}
	if conns != nil {
		// The negotiated protocol is known once the handshake is done,
		// which net/http does on the connection's own goroutine:
		// VerifyConnection is called there, after ALPN, once per
		// successful handshake.
		s.config = config.Clone()
		verify := config.VerifyConnection
		s.config.VerifyConnection = func(cs tls.ConnectionState) error {
			if verify != nil {
				if err := verify(cs); err != nil {
					return err
				}
			}
			if cs.NegotiatedProtocol == "h2" {
				s.count(ProtocolH2)
			} else {
				s.count(ProtocolHTTPS)
			}
			return nil
		}
	}
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

// h2Preface starts every HTTP/2 connection with prior knowledge (RFC 9113
// §3.4). No HTTP/1 request starts with more of it than "P" ("PRI" is not
// a method net/http serves over HTTP/1, and its request line would go on
// differently).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func (s *Listener) classify(c net.Conn) {
	p := &peekedConn{Conn: c}
	c.SetReadDeadline(time.Now().Add(s.timeout))
	if _, err := io.ReadFull(c, p.buf[:1]); err != nil {
		s.count(ProtocolSilent)
		c.Close()
		return
	}
	p.n = 1
	protocol := ProtocolHTTP
	switch {
	case p.buf[0] == recordTypeHandshake:
		protocol = "" // counted after the handshake, by what ALPN chose
	case p.buf[0] == h2Preface[0] && s.conns != nil:
		// Only to count h2c apart: read on while what came matches the
		// preface. An HTTP/1 request departs from it within its first
		// bytes, which come in one segment with the rest of its line,
		// so this never waits for bytes a client sends only later.
		for p.n < len(h2Preface) && string(p.buf[:p.n]) == h2Preface[:p.n] {
			n, err := c.Read(p.buf[p.n:])
			if err != nil {
				break // net/http sees the same error on its next read
			}
			p.n += n
		}
		if string(p.buf[:p.n]) == h2Preface {
			protocol = ProtocolH2C
		}
	}
	c.SetReadDeadline(time.Time{})
	var out net.Conn = p
	if protocol == "" {
		out = tls.Server(out, s.config)
	} else {
		s.count(protocol)
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

// peekedConn gives back the bytes read to classify the connection before
// anything else.
type peekedConn struct {
	net.Conn
	buf  [len(h2Preface)]byte
	n    int // bytes in buf
	read int // of which given back; only the server's goroutine reads
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if c.read < c.n {
		// These bytes alone: reading more now could wait for data the
		// client sends only after an answer.
		n := copy(p, c.buf[c.read:c.n])
		c.read += n
		return n, nil
	}
	return c.Conn.Read(p)
}

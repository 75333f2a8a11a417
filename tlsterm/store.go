package tlsterm

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead-router/bulkhead/internal/logging"
	"github.com/bulkhead-router/bulkhead/routing"
)

// Metric names.
const (
	MetricCertificates  = "bulkhead_tls_certificates"
	MetricNoCertificate = "bulkhead_tls_handshakes_without_certificate_total"
	MetricNotAfter      = "bulkhead_tls_certificate_not_after_timestamp_seconds"
	MetricConnections   = "bulkhead_proxy_connections_total"
)

// Store holds the certificates the router serves, from the applied route
// table (routing.Table.Certificates, which the stored last-known-good
// table keeps too), and answers each TLS handshake from them. Set swaps
// the whole set at once: a handshake sees the old set or the new one, and
// connections already established keep the certificate they got, so a
// Secret's change reaches new connections without a restart and without
// dropping any.
//
// A listener offers, in this order: the certificates of the HTTPS Gateway
// listeners of its Gateway port, the Ingress certificates (spec.tls
// hosts), the default certificate (routing.CertificateIndex.Serve).
// Expired certificates are served as the Secrets hold them; each one's
// expiry is a metric (bulkhead_tls_certificate_not_after_timestamp_seconds)
// to alert on.
type Store struct {
	cur      atomic.Pointer[certState]
	log      *slog.Logger
	count    prometheus.Gauge
	misses   *prometheus.CounterVec
	notAfter *prometheus.GaugeVec
}

type certState struct {
	certs  []routing.Certificate // the table's slice: Set skips an unchanged one
	index  *routing.CertificateIndex
	parsed map[*routing.Certificate]*tls.Certificate
	byPEM  map[[sha256.Size]byte]*tls.Certificate // reused by the next Set when the PEM is the same
}

// NewStore returns an empty store; reg (may be nil) takes its metrics.
func NewStore(reg prometheus.Registerer, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		log: log,
		count: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricCertificates,
			Help: "Certificates served by TLS listeners: one per programmed HTTPS Gateway listener, per Ingress TLS host, and the default certificate."}),
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricNoCertificate,
			Help: "TLS handshakes refused because no certificate matches the server name (SNI) and there is no default certificate, by the listener's Gateway port (\"proxy\": the proxy listener serving none)."}, []string{"port"}),
		notAfter: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricNotAfter,
			Help: "Expiry (NotAfter, Unix seconds) of the leaf certificate of each Secret served. Expired certificates are still served: alert before."}, []string{"secret"}),
	}
	if reg != nil {
		reg.MustRegister(s.count, s.misses, s.notAfter)
	}
	s.cur.Store(&certState{index: routing.NewCertificateIndex(nil)})
	return s
}

// Set makes certs the served set. certs comes from an applied table and
// must not be modified afterwards. A key pair that does not parse (the
// translation checked it, so only a damaged stored table could hold one)
// is left out and logged; the others are served.
func (s *Store) Set(certs []routing.Certificate) {
	prev := s.cur.Load()
	if len(certs) == len(prev.certs) && (len(certs) == 0 || &certs[0] == &prev.certs[0]) {
		return
	}
	next := &certState{certs: certs, index: routing.NewCertificateIndex(certs),
		parsed: make(map[*routing.Certificate]*tls.Certificate, len(certs)), byPEM: map[[sha256.Size]byte]*tls.Certificate{}}
	for i := range certs {
		c := &certs[i]
		h := sha256.New()
		h.Write(c.Cert)
		h.Write([]byte{0})
		h.Write(c.Key)
		var sum [sha256.Size]byte
		h.Sum(sum[:0])
		kp := prev.byPEM[sum]
		if kp == nil {
			pair, err := tls.X509KeyPair(c.Cert, c.Key)
			if err != nil {
				s.log.Error("certificate not served: its key pair does not parse", "gateway", c.Gateway.String(), "listener", c.Listener,
					"ingress", c.Ingress.String(), "default", c.Default, "secret", c.Secret.String(), logging.KeyError, err)
				continue
			}
			kp = &pair
		}
		next.parsed[c], next.byPEM[sum] = kp, kp
	}
	s.cur.Store(next)
	s.count.Set(float64(len(next.parsed)))
	s.notAfter.Reset()
	for c, kp := range next.parsed {
		if kp.Leaf != nil {
			s.notAfter.WithLabelValues(c.Secret.String()).Set(float64(kp.Leaf.NotAfter.Unix()))
		}
	}
}

// Config is the TLS configuration of a listener serving Gateway port
// port (0: a proxy listener serving none): TLS 1.2 at least, HTTP/2 or
// HTTP/1.1 by ALPN, the certificate chosen per handshake by port and
// server name (routing.CertificateIndex.Serve: the port's Gateway
// listeners, then Ingress TLS hosts, then the default certificate). A
// handshake no certificate matches fails, counted and logged at debug
// level (a scanner sending random names must not fill the log).
func (s *Store) Config(port int32) *tls.Config {
	label := strconv.Itoa(int(port))
	if port == routing.IngressPort {
		label = "proxy"
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// h2 first: a client offering both gets HTTP/2 (crypto/tls follows
		// the server's order). A client without ALPN gets HTTP/1.1.
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			st := s.cur.Load()
			c := st.index.Serve(port, hello.ServerName)
			if c == nil || st.parsed[c] == nil {
				s.misses.WithLabelValues(label).Inc()
				s.log.Debug("TLS handshake refused: no certificate for the server name", "server_name", hello.ServerName, "port", label)
				return nil, fmt.Errorf("no certificate for server name %q on port %s", hello.ServerName, label)
			}
			return st.parsed[c], nil
		},
	}
}

// ConnectionCounter is the counter NewListener takes: connections by
// protocol. reg may be nil.
func ConnectionCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricConnections,
		Help: "Connections accepted by the proxy listeners, by protocol: http (HTTP/1.x), h2c (HTTP/2 with prior knowledge), https and h2 (HTTP/1.1 and HTTP/2 over TLS, counted once the handshake succeeded), or silent (closed before sending a byte)."}, []string{"protocol"})
	for _, p := range []string{ProtocolHTTP, ProtocolH2C, ProtocolHTTPS, ProtocolH2, ProtocolSilent} {
		c.WithLabelValues(p)
	}
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}

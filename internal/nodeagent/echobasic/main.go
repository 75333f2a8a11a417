package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "-conf":
		err = serveDNSPlaceholder(ctx, log)
	case os.Getenv("GRPC_ECHO_SERVER") != "":
		err = serveGRPC(ctx, log)
	case os.Getenv("TCP_ECHO_SERVER") != "":
		err = serveTCPEcho(ctx, log)
	default:
		err = serveHTTP(ctx, log)
	}
	if err != nil {
		log.Error("echobasic failed", "err", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// identity is the "Context" block of every echo.
type identity struct {
	Namespace string `json:"namespace"`
	Ingress   string `json:"ingress"`
	Service   string `json:"service"`
	Pod       string `json:"pod"`
}

// echo is the answer the conformance suite decodes (its
// http.RequestAssertions); the field names are the contract.
type echo struct {
	Path     string              `json:"path"`
	Host     string              `json:"host"`
	Method   string              `json:"method"`
	Proto    string              `json:"proto"`
	Headers  map[string][]string `json:"headers"`
	HTTPPort string              `json:"httpPort"`
	identity
	TLS *tlsInfo `json:"tls,omitempty"`
}

type tlsInfo struct {
	Version            string   `json:"version"`
	PeerCertificates   []string `json:"peerCertificates,omitempty"`
	ServerName         string   `json:"serverName"`
	NegotiatedProtocol string   `json:"negotiatedProtocol,omitempty"`
	CipherSuite        string   `json:"cipherSuite"`
}

type server struct {
	id       identity
	httpPort string
	log      *slog.Logger

	mu       sync.Mutex
	attempts map[string]int // /retry/ attempts per uuid
}

func serveHTTP(ctx context.Context, log *slog.Logger) error {
	s := &server{
		id: identity{
			Namespace: os.Getenv("NAMESPACE"), Ingress: os.Getenv("INGRESS_NAME"),
			Service: os.Getenv("SERVICE_NAME"), Pod: os.Getenv("POD_NAME"),
		},
		httpPort: envOr("HTTP_PORT", "3000"),
		log:      log,
		attempts: map[string]int{},
	}
	var servers []*http.Server
	errs := make(chan error, 3)
	listen := func(srv *http.Server, port string, tlsConf *tls.Config) error {
		l, err := net.Listen("tcp", ":"+port)
		if err != nil {
			return err
		}
		if tlsConf != nil {
			l = tls.NewListener(l, tlsConf)
		}
		servers = append(servers, srv)
		log.Info("listening", "port", port, "tls", tlsConf != nil)
		go func() { errs <- srv.Serve(l) }()
		return nil
	}

	if err := listen(&http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}, s.httpPort, nil); err != nil {
		return err
	}
	h2c := new(http.Protocols)
	h2c.SetHTTP1(true)
	h2c.SetUnencryptedHTTP2(true)
	h2cHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 && r.Header.Get("Upgrade") != "h2c" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, "Expected h2c request")
			return
		}
		s.echo(w, r)
	})
	if err := listen(&http.Server{Handler: h2cHandler, Protocols: h2c, ReadHeaderTimeout: 10 * time.Second},
		envOr("H2C_PORT", "3001"), nil); err != nil {
		return err
	}
	if cert, key := os.Getenv("TLS_SERVER_CERT"), os.Getenv("TLS_SERVER_PRIVKEY"); cert != "" && key != "" {
		conf, err := serverTLS(cert, key, os.Getenv("TLS_CLIENT_CACERTS"))
		if err != nil {
			return err
		}
		conf.NextProtos = []string{"h2", "http/1.1"}
		if err := listen(&http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second},
			envOr("HTTPS_PORT", "8443"), conf); err != nil {
			return err
		}
	}
	select {
	case err := <-errs:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, srv := range servers {
		srv.Shutdown(shutdown)
	}
	return nil
}

func serverTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", clientCAFile)
		}
		// Verify a client certificate if one is given, as the image does.
		conf.ClientAuth, conf.ClientCAs = tls.VerifyClientCertIfGiven, pool
	}
	return conf, nil
}

var statusPath = regexp.MustCompile(`^/status/(\d\d\d)$`)

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Routing sees "//" folded, as the image's mux does; the echo still
	// reports the request URI as received.
	path := strings.ReplaceAll(r.URL.Path, "//", "/")
	switch {
	case path == "/health":
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "OK")
	case strings.HasPrefix(path, "/status/"):
		code := http.StatusBadRequest
		if m := statusPath.FindStringSubmatch(r.RequestURI); m != nil {
			code, _ = strconv.Atoi(m[1])
		}
		w.WriteHeader(code)
	case strings.HasPrefix(path, "/retry/"):
		s.retry(w, r)
	case path == "/ws":
		serveWebSocketEcho(w, r)
	default:
		s.echo(w, r)
	}
}

func (s *server) echo(w http.ResponseWriter, r *http.Request) {
	if err := delay(r, "delay"); err != nil {
		writeError(w, err, http.StatusInternalServerError)
		return
	}
	body, err := json.MarshalIndent(echo{
		Path: r.RequestURI, Host: r.Host, Method: r.Method, Proto: r.Proto,
		Headers: r.Header, HTTPPort: s.httpPort, identity: s.id, TLS: describeTLS(r.TLS),
	}, "", " ")
	if err != nil {
		writeError(w, err, http.StatusInternalServerError)
		return
	}
	setRequestedHeaders(w, r.Header)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(body)
}

// setRequestedHeaders applies X-Echo-Set-Header: "Name: value, Name2: v".
// Names keep their case (the suite checks response headers by exact
// spelling in some tests); a repeated name joins its values with ",".
func setRequestedHeaders(w http.ResponseWriter, h http.Header) {
	for _, list := range h["X-Echo-Set-Header"] {
		for kv := range strings.SplitSeq(list, ",") {
			name, value, _ := strings.Cut(strings.TrimSpace(kv), ":")
			value = strings.TrimSpace(value) // the same on the wire, where clients trim
			if len(w.Header()[name]) == 0 {
				w.Header()[name] = []string{value}
			} else {
				w.Header()[name][0] += "," + value
			}
		}
	}
}

func (s *server) retry(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	uuid := q.Get("uuid")
	if uuid == "" {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, "uuid is required")
		return
	}
	succeedAfter, err := strconv.Atoi(q.Get("succeedAfter"))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, "succeedAfter is required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.attempts[uuid] >= succeedAfter {
		s.echo(w, r)
		return
	}
	s.attempts[uuid]++
	if err := delay(r, "delayRetry"); err != nil {
		writeError(w, err, http.StatusInternalServerError)
		return
	}
	if code, err := strconv.Atoi(q.Get("responseCode")); err == nil {
		w.WriteHeader(code)
		return
	}
	// Default failure: reset the connection (linger 0), no HTTP answer.
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeError(w, err, http.StatusInternalServerError)
		return
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		tcp.SetLinger(0)
	}
	conn.Close()
}

func delay(r *http.Request, key string) error {
	v := r.FormValue(key)
	if v == "" {
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return err
	}
	time.Sleep(d)
	return nil
}

func writeError(w http.ResponseWriter, err error, code int) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(struct {
		Message string `json:"message"`
	}{err.Error()})
}

func describeTLS(cs *tls.ConnectionState) *tlsInfo {
	if cs == nil {
		return nil
	}
	info := &tlsInfo{
		NegotiatedProtocol: cs.NegotiatedProtocol,
		ServerName:         cs.ServerName,
		CipherSuite:        tls.CipherSuiteName(cs.CipherSuite),
	}
	switch cs.Version {
	case tls.VersionTLS13:
		info.Version = "TLSv1.3"
	case tls.VersionTLS12:
		info.Version = "TLSv1.2"
	case tls.VersionTLS11:
		info.Version = "TLSv1.1"
	case tls.VersionTLS10:
		info.Version = "TLSv1.0"
	}
	for _, c := range cs.PeerCertificates {
		info.PeerCertificates = append(info.PeerCertificates,
			string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
	}
	return info
}

func serveUntil(ctx context.Context, log *slog.Logger, srv *http.Server, port string) error {
	l, err := net.Listen("tcp", ":"+port)
	if err != nil {
		return err
	}
	log.Info("listening", "port", port)
	errs := make(chan error, 1)
	go func() { errs <- srv.Serve(l) }()
	select {
	case err := <-errs:
		return err
	case <-ctx.Done():
		srv.Close()
		return nil
	}
}

// serveTCPEcho copies every connection's bytes back.
func serveTCPEcho(ctx context.Context, log *slog.Logger) error {
	var listeners []net.Listener
	l, err := net.Listen("tcp", ":"+envOr("HTTP_PORT", "3000"))
	if err != nil {
		return err
	}
	listeners = append(listeners, l)
	if cert, key := os.Getenv("TLS_SERVER_CERT"), os.Getenv("TLS_SERVER_PRIV_KEY"); cert != "" && key != "" {
		conf, err := serverTLS(cert, key, "")
		if err != nil {
			return err
		}
		tl, err := net.Listen("tcp", ":"+envOr("HTTPS_PORT", "8443"))
		if err != nil {
			return err
		}
		listeners = append(listeners, tls.NewListener(tl, conf))
	}
	for _, l := range listeners {
		log.Info("tcp echo listening", "addr", l.Addr().String())
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); io.Copy(c, c) }()
			}
		}()
	}
	<-ctx.Done()
	for _, l := range listeners {
		l.Close()
	}
	return nil
}

// serveDNSPlaceholder answers every DNS query on port 53 with REFUSED.
func serveDNSPlaceholder(ctx context.Context, log *slog.Logger) error {
	pc, err := net.ListenPacket("udp", ":53")
	if err != nil {
		return err
	}
	tl, err := net.Listen("tcp", ":53")
	if err != nil {
		pc.Close()
		return err
	}
	log.Info("DNS placeholder listening (answers REFUSED)", "port", 53)
	go func() {
		buf := make([]byte, 512)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := refuse(buf[:n]); resp != nil {
				pc.WriteTo(resp, addr)
			}
		}
	}()
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				var size [2]byte
				if _, err := io.ReadFull(c, size[:]); err != nil {
					return
				}
				msg := make([]byte, int(size[0])<<8|int(size[1]))
				if _, err := io.ReadFull(c, msg); err != nil {
					return
				}
				if resp := refuse(msg); resp != nil {
					c.Write(append([]byte{byte(len(resp) >> 8), byte(len(resp))}, resp...))
				}
			}()
		}
	}()
	<-ctx.Done()
	pc.Close()
	tl.Close()
	return nil
}

// refuse turns a DNS query into its REFUSED answer: same ID and question,
// QR set, RCODE 5, no records.
func refuse(q []byte) []byte {
	if len(q) < 12 {
		return nil
	}
	r := append([]byte(nil), q...)
	r[2] = 0x80 | q[2]&0x79 // QR, keep opcode and RD
	r[3] = 5                // REFUSED
	// No answer, authority or additional records.
	for i := 6; i < 12; i++ {
		r[i] = 0
	}
	// Drop anything after the question section (e.g. an OPT record).
	qd := int(q[4])<<8 | int(q[5])
	off := 12
	for range qd {
		for off < len(r) && r[off] != 0 {
			if r[off]&0xC0 != 0 {
				off++
				break
			}
			off += int(r[off]) + 1
		}
		off += 1 + 4
	}
	if off > len(r) {
		return nil
	}
	return r[:off]
}

var errNotWebSocket = errors.New("not a websocket upgrade")

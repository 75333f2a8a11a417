package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"
)

// identity is where the answer comes from, fixed for the process.
type identity struct {
	Namespace string `json:"namespace"`
	Ingress   string `json:"ingress"`
	Service   string `json:"service"`
	Pod       string `json:"pod"`
}

// echo is the answer's JSON, field names and order as the suite's
// CapturedRequest reads them.
type echo struct {
	Path    string              `json:"path"`
	Host    string              `json:"host"`
	Method  string              `json:"method"`
	Proto   string              `json:"proto"`
	Headers map[string][]string `json:"headers"`
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
	id  identity
	log *slog.Logger
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The original folds "//" before its mux sees the path, so "//health"
	// is the health check too.
	if strings.ReplaceAll(r.URL.Path, "//", "/") == "/health" {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("OK"))
		return
	}
	s.log.Debug("echo", "uri", r.RequestURI, "remote", r.RemoteAddr)
	body, err := json.MarshalIndent(echo{
		Path: r.RequestURI, Host: r.Host, Method: r.Method, Proto: r.Proto, Headers: r.Header,
		identity: s.id, TLS: tlsState(r.TLS),
	}, "", " ")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		msg, _ := json.Marshal(map[string]string{"message": err.Error()})
		_, _ = w.Write(msg)
		return
	}
	_, _ = w.Write(body)
}

var tlsVersions = map[uint16]string{
	tls.VersionTLS13: "TLSv1.3",
	tls.VersionTLS12: "TLSv1.2",
	tls.VersionTLS11: "TLSv1.1",
	tls.VersionTLS10: "TLSv1.0",
}

func tlsState(cs *tls.ConnectionState) *tlsInfo {
	if cs == nil {
		return nil
	}
	info := &tlsInfo{
		Version:            tlsVersions[cs.Version],
		ServerName:         cs.ServerName,
		NegotiatedProtocol: cs.NegotiatedProtocol,
		CipherSuite:        tls.CipherSuiteName(cs.CipherSuite),
	}
	for _, c := range cs.PeerCertificates {
		info.PeerCertificates = append(info.PeerCertificates, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
	}
	return info
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// tlsConfig is the HTTPS listener's configuration: client certificates are
// verified when clientCA names a file and a client sends one, never
// required, as the original does.
func tlsConfig(certFile, keyFile, clientCA string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	if clientCA != "" {
		pemBytes, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("%s: no PEM certificate", clientCA)
		}
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		cfg.ClientCAs = pool
	}
	return cfg, nil
}

func run() error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := &server{
		id: identity{
			Namespace: os.Getenv("NAMESPACE"),
			Ingress:   os.Getenv("INGRESS_NAME"),
			Service:   os.Getenv("SERVICE_NAME"),
			Pod:       os.Getenv("POD_NAME"),
		},
		log: log,
	}
	errs := make(chan error, 2)
	httpAddr := ":" + envOr("HTTP_PORT", "3000")
	go func() {
		log.Info("listening", "address", httpAddr, "scheme", "http")
		srv := &http.Server{Addr: httpAddr, Handler: s, ReadHeaderTimeout: 10 * time.Second}
		errs <- srv.ListenAndServe()
	}()
	if cert, key := os.Getenv("TLS_SERVER_CERT"), os.Getenv("TLS_SERVER_PRIVKEY"); cert != "" && key != "" {
		cfg, err := tlsConfig(cert, key, os.Getenv("TLS_CLIENT_CACERTS"))
		if err != nil {
			return err
		}
		httpsAddr := ":" + envOr("HTTPS_PORT", "8443")
		go func() {
			log.Info("listening", "address", httpsAddr, "scheme", "https")
			srv := &http.Server{Addr: httpsAddr, Handler: s, TLSConfig: cfg, ReadHeaderTimeout: 10 * time.Second}
			errs <- srv.ListenAndServeTLS("", "")
		}()
	}
	return <-errs
}

func main() {
	if err := run(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "ingressecho:", err)
		os.Exit(1)
	}
}

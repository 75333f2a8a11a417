package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/bulkhead-router/bulkhead/upstream"
)

// backendTLSConfig is how the router trusts pods whose Service port says
// TLS (appProtocol https, tls or h2). Pods are reached by IP; their
// certificate is checked against <service>.<namespace>.svc, which is also
// sent as SNI.
type backendTLSConfig struct {
	CAFile             string
	InsecureSkipVerify bool
	ClientCertFile     string
	ClientKeyFile      string

	// TLS is what the flags load, for upstream.Config.
	TLS upstream.TLSConfig
}

func (b *backendTLSConfig) register(fs *flag.FlagSet) func() error {
	fs.StringVar(&b.CAFile, "backend-tls-ca-file", "", "PEM bundle of the CAs that sign the certificates of pods served over TLS (Service appProtocol https, tls or h2); they must name <service>.<namespace>.svc; empty: the system's roots")
	fs.BoolVar(&b.InsecureSkipVerify, "backend-tls-insecure-skip-verify", false, "accept any certificate from pods served over TLS: encrypted, but not authenticated (whoever answers on a pod's IP is believed)")
	fs.StringVar(&b.ClientCertFile, "backend-tls-client-cert-file", "", "PEM certificate the router presents to pods that ask for one (mutual TLS); with -backend-tls-client-key-file; read at start")
	fs.StringVar(&b.ClientKeyFile, "backend-tls-client-key-file", "", "PEM key of -backend-tls-client-cert-file")
	return b.load
}

func (b *backendTLSConfig) load() error {
	b.TLS = upstream.TLSConfig{InsecureSkipVerify: b.InsecureSkipVerify}
	if b.CAFile != "" {
		pem, err := os.ReadFile(b.CAFile)
		if err != nil {
			return fmt.Errorf("-backend-tls-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("-backend-tls-ca-file %s: no PEM certificate in it", b.CAFile)
		}
		b.TLS.RootCAs = pool
	}
	if (b.ClientCertFile == "") != (b.ClientKeyFile == "") {
		return errors.New("-backend-tls-client-cert-file and -backend-tls-client-key-file go together")
	}
	if b.ClientCertFile != "" {
		cert, err := tls.LoadX509KeyPair(b.ClientCertFile, b.ClientKeyFile)
		if err != nil {
			return fmt.Errorf("-backend-tls-client-cert-file: %w", err)
		}
		b.TLS.ClientCertificate = &cert
	}
	return nil
}

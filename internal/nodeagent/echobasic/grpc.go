package main

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/encoding/protowire"
)

// grpcService is the conformance suite's echo service, whose methods its
// gRPC client calls (its grpcecho.proto, package
// gateway_api_conformance.echo_basic.grpcecho).
const grpcService = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho"

// The service is served without generated code: its messages are few and
// flat, so they are written with protowire by the field numbers of the
// suite's proto (see marshal), and a codec of our own (wireCodec) hands
// the handlers the request's bytes (EchoRequest has no field) and sends
// their bytes as they are.
var grpcEchoService = grpc.ServiceDesc{
	ServiceName: grpcService,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Echo", Handler: echoHandler("Echo")},
		{MethodName: "EchoTwo", Handler: echoHandler("EchoTwo")},
		// EchoThree is left out on purpose: the suite expects UNIMPLEMENTED,
		// which grpc-go answers for a method the service does not list.
	},
	Metadata: "grpcecho.proto",
}

func echoHandler(method string) func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	return func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		var req wireMessage
		if err := dec(&req); err != nil {
			return nil, err
		}
		a, err := srv.(*grpcEcho).echo(ctx, method)
		if err != nil {
			return nil, err
		}
		return wireMessage(a.marshal()), nil
	}
}

// wireMessage is a message's protobuf encoding.
type wireMessage []byte

// wireCodec passes wireMessages through as they are.
type wireCodec struct{}

func (wireCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(wireMessage)
	if !ok {
		return nil, fmt.Errorf("wireCodec: cannot marshal %T", v)
	}
	return m, nil
}

func (wireCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(*wireMessage)
	if !ok {
		return fmt.Errorf("wireCodec: cannot unmarshal into %T", v)
	}
	*m = append((*m)[:0], data...)
	return nil
}

func (wireCodec) Name() string { return "proto" }

// grpcIdentity is the pod's identity, the response's Context.
type grpcIdentity struct{ Namespace, Ingress, ServiceName, Pod string }

type grpcHeader struct{ Key, Value string }

// grpcTLS is what the response reports of a TLS connection.
type grpcTLS struct {
	Version, NegotiatedProtocol, ServerName, CipherSuite string
	PeerCertificates                                     []string
}

// grpcAssertions is what an echo answers, the response's Assertions.
type grpcAssertions struct {
	FullyQualifiedMethod string
	Headers              []grpcHeader
	Authority            string
	Context              *grpcIdentity
	TLS                  *grpcTLS
}

// marshal is the EchoResponse holding a, by the suite's field numbers:
// EchoResponse{assertions = 1}; Assertions{fully_qualified_method = 1,
// headers = 2, authority = 3, context = 4, tls_assertions = 5};
// Header{key = 1, value = 2}; Context{namespace = 1, ingress = 2,
// service_name = 3, pod = 4}; TLSAssertions{version = 1,
// negotiated_protocol = 2, server_name = 3, cipher_suite = 4,
// peer_certificates = 5}. Empty strings are left out, as proto3 does.
func (a *grpcAssertions) marshal() []byte {
	var as []byte
	as = appendString(as, 1, a.FullyQualifiedMethod)
	for _, h := range a.Headers {
		as = appendMessage(as, 2, appendString(appendString(nil, 1, h.Key), 2, h.Value))
	}
	as = appendString(as, 3, a.Authority)
	if c := a.Context; c != nil {
		var b []byte
		b = appendString(b, 1, c.Namespace)
		b = appendString(b, 2, c.Ingress)
		b = appendString(b, 3, c.ServiceName)
		b = appendString(b, 4, c.Pod)
		as = appendMessage(as, 4, b)
	}
	if t := a.TLS; t != nil {
		var b []byte
		b = appendString(b, 1, t.Version)
		b = appendString(b, 2, t.NegotiatedProtocol)
		b = appendString(b, 3, t.ServerName)
		b = appendString(b, 4, t.CipherSuite)
		for _, c := range t.PeerCertificates {
			b = protowire.AppendTag(b, 5, protowire.BytesType)
			b = protowire.AppendString(b, c)
		}
		as = appendMessage(as, 5, b)
	}
	return appendMessage(nil, 1, as)
}

func appendString(b []byte, field protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendMessage(b []byte, field protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

// grpcEcho answers the conformance suite's GrpcEcho service as its
// echo-basic image does in gRPC mode (GRPC_ECHO_SERVER): Echo and EchoTwo
// report the fully qualified method, the request's metadata (":authority"
// among them), the authority and the pod's identity, and over TLS the
// connection's; EchoThree is left UNIMPLEMENTED on purpose.
type grpcEcho struct {
	tls bool
	id  *grpcIdentity
	log *slog.Logger
}

func (s *grpcEcho) echo(ctx context.Context, method string) (*grpcAssertions, error) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return nil, errors.New("no metadata in the request")
	}
	a := &grpcAssertions{FullyQualifiedMethod: "/" + grpcService + "/" + method, Context: s.id}
	for k, vs := range md {
		for _, v := range vs {
			if k == ":authority" {
				a.Authority = v
			}
			a.Headers = append(a.Headers, grpcHeader{Key: k, Value: v})
		}
	}
	if s.tls {
		p, ok := peer.FromContext(ctx)
		if !ok {
			return nil, errors.New("no peer for the request")
		}
		info, ok := p.AuthInfo.(credentials.TLSInfo)
		if !ok {
			return nil, errors.New("no TLS information for the request")
		}
		st := info.State
		ta := &grpcTLS{Version: tlsVersionName(st.Version), NegotiatedProtocol: st.NegotiatedProtocol,
			ServerName: st.ServerName, CipherSuite: tls.CipherSuiteName(st.CipherSuite)}
		for _, c := range st.PeerCertificates {
			ta.PeerCertificates = append(ta.PeerCertificates, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
		}
		a.TLS = ta
	}
	s.log.Debug("gRPC echo", "method", method, "authority", a.Authority, "tls", s.tls)
	return a, nil
}

// tlsVersionName names a TLS version as the suite's server does.
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS10:
		return "TLSv1.0"
	}
	return fmt.Sprintf("0x%04x", v)
}

// serveGRPC serves GrpcEcho in the clear (h2c, prior knowledge) on
// HTTP_PORT (3000) and, when TLS_SERVER_CERT and TLS_SERVER_PRIV_KEY name
// PEM files, over TLS on HTTPS_PORT (8443), until ctx ends.
func serveGRPC(ctx context.Context, log *slog.Logger) error {
	id := &grpcIdentity{Namespace: os.Getenv("NAMESPACE"), Ingress: os.Getenv("INGRESS_NAME"),
		ServiceName: os.Getenv("SERVICE_NAME"), Pod: os.Getenv("POD_NAME")}
	plain, err := net.Listen("tcp", ":"+envOr("HTTP_PORT", "3000"))
	if err != nil {
		return err
	}
	var secure net.Listener
	var creds credentials.TransportCredentials
	if cert, key := os.Getenv("TLS_SERVER_CERT"), os.Getenv("TLS_SERVER_PRIV_KEY"); cert != "" && key != "" {
		if creds, err = credentials.NewServerTLSFromFile(cert, key); err != nil {
			plain.Close()
			return fmt.Errorf("gRPC TLS: %w", err)
		}
		if secure, err = net.Listen("tcp", ":"+envOr("HTTPS_PORT", "8443")); err != nil {
			plain.Close()
			return err
		}
	}
	return runGRPC(ctx, log, id, plain, secure, creds)
}

// runGRPC serves GrpcEcho on plain, and with creds on secure unless it is
// nil, until ctx ends or a server fails.
func runGRPC(ctx context.Context, log *slog.Logger, id *grpcIdentity, plain, secure net.Listener, creds credentials.TransportCredentials) error {
	type server struct {
		srv *grpc.Server
		l   net.Listener
	}
	servers := []server{{grpc.NewServer(grpc.ForceServerCodec(wireCodec{})), plain}}
	servers[0].srv.RegisterService(&grpcEchoService, &grpcEcho{id: id, log: log})
	if secure != nil {
		srv := grpc.NewServer(grpc.Creds(creds), grpc.ForceServerCodec(wireCodec{}))
		srv.RegisterService(&grpcEchoService, &grpcEcho{tls: true, id: id, log: log})
		servers = append(servers, server{srv, secure})
	}
	errs := make(chan error, len(servers))
	for _, s := range servers {
		log.Info("gRPC echo listening", "address", s.l.Addr().String(), "tls", s.l == secure)
		go func() { errs <- s.srv.Serve(s.l) }()
	}
	defer func() {
		for _, s := range servers {
			s.srv.Stop()
		}
	}()
	select {
	case err := <-errs:
		return err
	case <-ctx.Done():
		return nil
	}
}

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

	pb "github.com/bulkhead-router/bulkhead/internal/nodeagent/echobasic/grpcechoserver"
)

// grpcEcho answers the conformance suite's GrpcEcho service as its
// echo-basic image does in gRPC mode (GRPC_ECHO_SERVER): Echo and EchoTwo
// report the fully qualified method, the request's metadata (":authority"
// among them), the authority and the pod's identity, and over TLS the
// connection's; EchoThree is left UNIMPLEMENTED on purpose.
type grpcEcho struct {
	pb.UnimplementedGrpcEchoServer
	tls bool
	id  *pb.Context
	log *slog.Logger
}

// grpcService is the service's full name, as the suite's client builds its
// expected method from it.
var grpcService = string(pb.File_grpcecho_proto.Services().ByName("GrpcEcho").FullName())

func (s *grpcEcho) Echo(ctx context.Context, _ *pb.EchoRequest) (*pb.EchoResponse, error) {
	return s.echo(ctx, "Echo")
}

func (s *grpcEcho) EchoTwo(ctx context.Context, _ *pb.EchoRequest) (*pb.EchoResponse, error) {
	return s.echo(ctx, "EchoTwo")
}

func (s *grpcEcho) echo(ctx context.Context, method string) (*pb.EchoResponse, error) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return nil, errors.New("no metadata in the request")
	}
	a := &pb.Assertions{FullyQualifiedMethod: "/" + grpcService + "/" + method, Context: s.id, Headers: []*pb.Header{}}
	for k, vs := range md {
		for _, v := range vs {
			if k == ":authority" {
				a.Authority = v
			}
			a.Headers = append(a.Headers, &pb.Header{Key: k, Value: v})
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
		ta := &pb.TLSAssertions{Version: tlsVersionName(st.Version), NegotiatedProtocol: st.NegotiatedProtocol,
			ServerName: st.ServerName, CipherSuite: tls.CipherSuiteName(st.CipherSuite)}
		for _, c := range st.PeerCertificates {
			ta.PeerCertificates = append(ta.PeerCertificates, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
		}
		a.TlsAssertions = ta
	}
	s.log.Debug("gRPC echo", "method", method, "authority", a.Authority, "tls", s.tls)
	return &pb.EchoResponse{Assertions: a}, nil
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
	id := &pb.Context{Namespace: os.Getenv("NAMESPACE"), Ingress: os.Getenv("INGRESS_NAME"),
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
func runGRPC(ctx context.Context, log *slog.Logger, id *pb.Context, plain, secure net.Listener, creds credentials.TransportCredentials) error {
	type server struct {
		srv *grpc.Server
		l   net.Listener
	}
	servers := []server{{grpc.NewServer(), plain}}
	pb.RegisterGrpcEchoServer(servers[0].srv, &grpcEcho{id: id, log: log})
	if secure != nil {
		srv := grpc.NewServer(grpc.Creds(creds))
		pb.RegisterGrpcEchoServer(srv, &grpcEcho{tls: true, id: id, log: log})
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

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/bulkhead-router/bulkhead/internal/nodeagent/echobasic/grpcechoserver"
	"github.com/bulkhead-router/bulkhead/internal/testcerts"
)

// The gRPC mode answers the conformance suite's client as the suite's
// echo-basic does: Echo and EchoTwo report the fully qualified method,
// the authority and metadata the call arrived with and the pod's
// identity; EchoThree is UNIMPLEMENTED; over TLS the connection's
// details. Real gRPC clients on real sockets, h2c and TLS.
func TestGRPCEcho(t *testing.T) {
	certPEM, keyPEM := testcerts.SelfSigned(t, "echo.example")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	creds, err := credentials.NewServerTLSFromFile(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	secure, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runGRPC(ctx, slog.New(slog.DiscardHandler), &pb.Context{Namespace: "ns", Pod: "grpc-pod-1", ServiceName: "svc"}, plain, secure, creds)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runGRPC: %v", err)
		}
	})

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	for _, c := range []struct {
		name  string
		addr  string
		creds credentials.TransportCredentials
	}{
		{"h2c", plain.Addr().String(), insecure.NewCredentials()},
		{"tls", secure.Addr().String(), credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "echo.example"})},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(c.creds), grpc.WithAuthority("echo.example"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			client := pb.NewGrpcEchoClient(conn)
			callCtx := metadata.AppendToOutgoingContext(context.Background(), "x-test", "yes")
			for method, call := range map[string]func(context.Context, *pb.EchoRequest, ...grpc.CallOption) (*pb.EchoResponse, error){
				"Echo": client.Echo, "EchoTwo": client.EchoTwo,
			} {
				resp, err := call(callCtx, &pb.EchoRequest{})
				if err != nil {
					t.Fatalf("%s: %v", method, err)
				}
				a := resp.GetAssertions()
				if a.GetFullyQualifiedMethod() != "/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/"+method ||
					a.GetAuthority() != "echo.example" || a.GetContext().GetPod() != "grpc-pod-1" || a.GetContext().GetNamespace() != "ns" {
					t.Errorf("%s: %v", method, a)
				}
				if !slices.ContainsFunc(a.GetHeaders(), func(h *pb.Header) bool { return h.GetKey() == "x-test" && h.GetValue() == "yes" }) {
					t.Errorf("%s: metadata x-test missing from %v", method, a.GetHeaders())
				}
				ta := a.GetTlsAssertions()
				switch {
				case c.name == "h2c" && ta != nil:
					t.Errorf("%s over h2c: TLS assertions %v", method, ta)
				case c.name == "tls" && (ta.GetVersion() != "TLSv1.3" || ta.GetServerName() != "echo.example" || ta.GetNegotiatedProtocol() != "h2"):
					t.Errorf("%s over TLS: TLS assertions %v", method, ta)
				}
			}
			if _, err := client.EchoThree(callCtx, &pb.EchoRequest{}); status.Code(err) != codes.Unimplemented {
				t.Errorf("EchoThree: %v, want UNIMPLEMENTED", err)
			}
		})
	}
}

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
	"google.golang.org/protobuf/encoding/protowire"

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
		done <- runGRPC(ctx, slog.New(slog.DiscardHandler), &grpcIdentity{Namespace: "ns", Pod: "grpc-pod-1", ServiceName: "svc"}, plain, secure, creds)
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
			callCtx := metadata.AppendToOutgoingContext(context.Background(), "x-test", "yes")
			call := func(method string) (*grpcAssertions, error) {
				var resp wireMessage
				// EchoRequest has no field: its encoding is empty.
				if err := conn.Invoke(callCtx, "/"+grpcService+"/"+method, wireMessage{}, &resp, grpc.ForceCodec(wireCodec{})); err != nil {
					return nil, err
				}
				return decodeEchoResponse(t, resp), nil
			}
			for _, method := range []string{"Echo", "EchoTwo"} {
				a, err := call(method)
				if err != nil {
					t.Fatalf("%s: %v", method, err)
				}
				if a.FullyQualifiedMethod != "/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/"+method ||
					a.Authority != "echo.example" || a.Context == nil || a.Context.Pod != "grpc-pod-1" || a.Context.Namespace != "ns" ||
					a.Context.ServiceName != "svc" {
					t.Errorf("%s: %+v", method, a)
				}
				if !slices.Contains(a.Headers, grpcHeader{Key: "x-test", Value: "yes"}) {
					t.Errorf("%s: metadata x-test missing from %v", method, a.Headers)
				}
				ta := a.TLS
				switch {
				case c.name == "h2c" && ta != nil:
					t.Errorf("%s over h2c: TLS assertions %+v", method, ta)
				case c.name == "tls" && (ta == nil || ta.Version != "TLSv1.3" || ta.ServerName != "echo.example" || ta.NegotiatedProtocol != "h2"):
					t.Errorf("%s over TLS: TLS assertions %+v", method, ta)
				}
			}
			if _, err := call("EchoThree"); status.Code(err) != codes.Unimplemented {
				t.Errorf("EchoThree: %v, want UNIMPLEMENTED", err)
			}
		})
	}
}

// decodeEchoResponse reads an EchoResponse as the suite's client would,
// by its proto's field numbers (see grpcAssertions.marshal), failing on
// anything it does not expect.
func decodeEchoResponse(t *testing.T, b []byte) *grpcAssertions {
	t.Helper()
	a := &grpcAssertions{}
	fields(t, b, func(n protowire.Number, v []byte) {
		if n != 1 {
			t.Fatalf("EchoResponse field %d", n)
		}
		fields(t, v, func(n protowire.Number, v []byte) {
			switch n {
			case 1:
				a.FullyQualifiedMethod = string(v)
			case 2:
				var h grpcHeader
				fields(t, v, func(n protowire.Number, v []byte) {
					switch n {
					case 1:
						h.Key = string(v)
					case 2:
						h.Value = string(v)
					}
				})
				a.Headers = append(a.Headers, h)
			case 3:
				a.Authority = string(v)
			case 4:
				a.Context = &grpcIdentity{}
				fields(t, v, func(n protowire.Number, v []byte) {
					switch n {
					case 1:
						a.Context.Namespace = string(v)
					case 2:
						a.Context.Ingress = string(v)
					case 3:
						a.Context.ServiceName = string(v)
					case 4:
						a.Context.Pod = string(v)
					}
				})
			case 5:
				a.TLS = &grpcTLS{}
				fields(t, v, func(n protowire.Number, v []byte) {
					switch n {
					case 1:
						a.TLS.Version = string(v)
					case 2:
						a.TLS.NegotiatedProtocol = string(v)
					case 3:
						a.TLS.ServerName = string(v)
					case 4:
						a.TLS.CipherSuite = string(v)
					case 5:
						a.TLS.PeerCertificates = append(a.TLS.PeerCertificates, string(v))
					}
				})
			default:
				t.Fatalf("Assertions field %d", n)
			}
		})
	})
	return a
}

// fields calls f with each length-delimited field of a message.
func fields(t *testing.T, b []byte, f func(protowire.Number, []byte)) {
	t.Helper()
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 || typ != protowire.BytesType {
			t.Fatalf("unexpected field (tag length %d, type %d)", l, typ)
		}
		b = b[l:]
		v, l := protowire.ConsumeBytes(b)
		if l < 0 {
			t.Fatalf("truncated field %d", n)
		}
		f(n, v)
		b = b[l:]
	}
}

package upstream_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/bulkhead-router/bulkhead/internal/testcerts"
	"github.com/bulkhead-router/bulkhead/upstream"
)

// BenchmarkProtocols measures one proxied GET through bulkhead's proxy and
// the upstream layer to a pod spoken to over HTTP/1.1, h2c and TLS (HTTP/2
// through ALPN), side by side in one run; the client speaks HTTP/1.1 to
// the router in all three. And a unary gRPC call straight to the pod and
// through the router (h2c both ways).
//
//	go test -run '^$' -bench Protocols -benchtime 2000x ./upstream/
func BenchmarkProtocols(b *testing.B) {
	logrus.SetOutput(io.Discard)
	hello := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello from a pod\n") })
	certPEM, keyPEM := testcerts.SelfSigned(b, "web.default.svc")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	serve := func(tlsOn bool) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: hello, Protocols: new(http.Protocols)}
		srv.Protocols.SetHTTP1(true)
		if tlsOn {
			srv.Protocols.SetHTTP2(true)
			l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}})
		} else {
			srv.Protocols.SetUnencryptedHTTP2(true)
		}
		go srv.Serve(l)
		b.Cleanup(func() { srv.Close() })
		return l.Addr().String()
	}
	plain, secure := serve(false), serve(true)
	for _, tc := range []struct{ name, args, pod string }{
		{"http1", "", plain},
		{"h2c", `, "protocol=h2c"`, plain},
		{"tls", `, "protocol=tls", "server-name=web.default.svc"`, secure},
	} {
		b.Run("get/"+tc.name, func(b *testing.B) {
			r := newRig(b, upstream.Config{TLS: upstream.TLSConfig{RootCAs: roots}},
				upstream.BackendFilterName+`("`+rpcKey+`"`+tc.args+`)`, tc.pod)
			tr := &http.Transport{MaxIdleConnsPerHost: 64}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			url := "http://" + r.addr + "/"
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(url)
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Fatalf("status %d", resp.StatusCode)
					}
				}
			})
		})
	}

	pod := startPodB(b)
	r := newRig(b, upstream.Config{}, h2cBackend(), pod)
	for _, tc := range []struct{ name, addr string }{{"direct", pod}, {"router", r.addr}} {
		b.Run("grpc-unary/"+tc.name, func(b *testing.B) {
			cc, err := grpc.NewClient("passthrough:///"+tc.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Close()
			c := testgrpc.NewTestServiceClient(cc)
			req := &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("ping")}}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.UnaryCall(context.Background(), req); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// startPodB is startPod for benchmarks.
func startPodB(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	p := &rpcPod{addr: l.Addr().String(), srv: grpc.NewServer()}
	testgrpc.RegisterTestServiceServer(p.srv, p)
	go p.srv.Serve(l)
	b.Cleanup(p.srv.Stop)
	return p.addr
}

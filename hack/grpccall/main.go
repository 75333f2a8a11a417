// Command grpccall makes gRPC calls through a bulkhead proxy listener to
// the demo's gRPC pods (bulkhead.local/grpc-echo, grpc.testing.TestService)
// and prints, per call, the pod that answered, the status and the trailer
// metadata that came back through the router. It is the demo's gRPC
// client; no grpcurl needed.
//
//	go run ./hack/grpccall -addr 127.0.0.1:8080 -authority grpc.example            # unary, h2c
//	go run ./hack/grpccall -addr 127.0.0.1:8080 -authority grpc.example -stream 5  # server streaming
//	go run ./hack/grpccall -addr 127.0.0.1:8080 -authority grpc.example -tls       # TLS (ALPN h2), SNI = authority
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"time"

	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/bulkhead-router/bulkhead/internal/grpcload"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "the router's proxy listener")
	authority := flag.String("authority", "grpc.example", "the :authority (the Ingress host)")
	useTLS := flag.Bool("tls", false, "TLS with ALPN h2; the certificate is not verified (the demo's is self-signed)")
	calls := flag.Int("n", 3, "calls to make")
	stream := flag.Int("stream", 0, "messages per call from StreamingOutputCall (0: UnaryCall)")
	flag.Parse()

	var tlsConf *tls.Config
	if *useTLS {
		tlsConf = &tls.Config{ServerName: *authority, InsecureSkipVerify: true, NextProtos: []string{"h2"}} // #nosec G402 -- the demo's self-signed certificate
	}
	conn, err := grpcload.Dial(*addr, *authority, tlsConf)
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpccall:", err)
		os.Exit(1)
	}
	defer conn.Close()
	failed := 0
	for i := range *calls {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var r grpcload.Reply
		if *stream > 0 {
			r, err = grpcload.Stream(ctx, conn, *stream, 16, 100*time.Millisecond, nil, grpcload.TrailerKey, fmt.Sprintf("call-%d", i))
		} else {
			r, err = grpcload.Unary(ctx, conn, &testpb.SimpleRequest{ResponseSize: 16}, grpcload.TrailerKey, fmt.Sprintf("call-%d", i))
		}
		cancel()
		if err != nil {
			failed++
		}
		fmt.Printf("call %d: status %s, pod %s, messages %d, trailers %v\n", i, status.Code(err), r.Pod, r.Messages, map[string][]string(r.Trailer))
	}
	if failed > 0 {
		os.Exit(1)
	}
}

package upstream_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"github.com/zalando/skipper/eskip"
	"github.com/zalando/skipper/filters"
	skrouting "github.com/zalando/skipper/routing"
	"github.com/zalando/skipper/routing/testdataclient"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/bulkhead-router/bulkhead/internal/testcerts"
	"github.com/bulkhead-router/bulkhead/proxy"
	"github.com/bulkhead-router/bulkhead/upstream"
)

// The gRPC tests run real grpc-go servers (the interop TestService and the
// health service) as pods on loopback, behind bulkhead's proxy with the
// upstream layer installed as cmd installs it, and call them with a real
// grpc-go client over h2c to the router.

const rpcKey = "default/rpc:50051"

// Pod behaviours.
const (
	podOK              = iota
	podUnavailable     // trailers-only UNAVAILABLE: refused before running the call
	podUnavailableLate // headers first, then UNAVAILABLE in the trailers
)

type rpcPod struct {
	testgrpc.UnimplementedTestServiceServer
	addr  string
	srv   *grpc.Server
	mode  atomic.Int32
	calls atomic.Int64
	// beforeSend, when set, runs before streamed answer i is sent.
	beforeSend func(i int)
}

func startPod(t *testing.T, creds credentials.TransportCredentials) *rpcPod {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	p := &rpcPod{addr: l.Addr().String(), srv: grpc.NewServer(opts...)}
	testgrpc.RegisterTestServiceServer(p.srv, p)
	healthgrpc.RegisterHealthServer(p.srv, health.NewServer())
	go p.srv.Serve(l)
	t.Cleanup(p.srv.Stop)
	return p
}

func (p *rpcPod) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	p.calls.Add(1)
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-pod", p.addr))
	switch p.mode.Load() {
	case podUnavailable:
		return nil, status.Error(codes.Unavailable, "draining")
	case podUnavailableLate:
		_ = grpc.SendHeader(ctx, metadata.Pairs("x-started", "1"))
		return nil, status.Error(codes.Unavailable, "lost its database")
	}
	if req.GetResponseStatus().GetCode() != 0 {
		return nil, status.Error(codes.Code(req.GetResponseStatus().GetCode()), req.GetResponseStatus().GetMessage())
	}
	return &testgrpc.SimpleResponse{Payload: req.GetPayload(), ServerId: p.addr}, nil
}

func (p *rpcPod) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	p.calls.Add(1)
	_ = stream.SendHeader(metadata.Pairs("x-pod", p.addr))
	stream.SetTrailer(metadata.Pairs("x-pod", p.addr, "x-sent", "all"))
	for i, rp := range req.GetResponseParameters() {
		if p.beforeSend != nil {
			p.beforeSend(i)
		}
		if rp.GetIntervalUs() > 0 {
			// The scenario is time passing between messages.
			select {
			case <-time.After(time.Duration(rp.GetIntervalUs()) * time.Microsecond):
			case <-stream.Context().Done():
				return stream.Context().Err()
			}
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: bytes.Repeat([]byte{'x'}, int(rp.GetSize()))}}); err != nil {
			return err
		}
	}
	return nil
}

func (p *rpcPod) FullDuplexCall(stream grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	p.calls.Add(1)
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		for _, rp := range req.GetResponseParameters() {
			if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: bytes.Repeat([]byte{'y'}, int(rp.GetSize()))}}); err != nil {
				return err
			}
		}
	}
}

// rig is the router in front of the pods: bulkhead's proxy and the
// upstream layer, on a listener speaking HTTP/1.1 and h2c to clients.
type rig struct {
	u    *upstream.Upstream
	reg  *prometheus.Registry
	addr string
}

func newRig(t testing.TB, cfg upstream.Config, chain string, pods ...string) *rig {
	t.Helper()
	return newRigWith(t, cfg, chain, proxy.Options{}, pods...)
}

// newRigWith is newRig with the proxy's options (those naming the routes
// and the upstream layer are set here).
func newRigWith(t testing.TB, cfg upstream.Config, chain string, o proxy.Options, pods ...string) *rig {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.RefuseUnrouted = true
	if cfg.InitialBackoff == 0 {
		cfg.InitialBackoff, cfg.MaxBackoff = time.Millisecond, 2*time.Millisecond
	}
	u, err := upstream.New(cfg, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	u.SetEndpoints(map[string][]string{rpcKey: pods})
	routes, err := eskip.Parse(`r: * -> ` + chain + ` -> <dynamic>;`)
	if err != nil {
		t.Fatal(err)
	}
	dc := testdataclient.New(routes)
	t.Cleanup(dc.Close)
	o.DataClients = []skrouting.DataClient{dc}
	o.Filters = []filters.Spec{u.PolicySpec(), u.BackendSpec()}
	o.PostProcessors = []skrouting.PostProcessor{u.PostProcessor()}
	o.WrapRoundTripper = u.WrapRoundTripper
	px := proxy.New(o)
	t.Cleanup(func() { px.Close() })
	<-px.FirstLoad()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: u.Handler(px), Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return &rig{u: u, reg: reg, addr: l.Addr().String()}
}

func (r *rig) client(t testing.TB) testgrpc.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+r.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testgrpc.NewTestServiceClient(cc)
}

// grpcCount reads the MetricGRPCResponses series of code.
func (r *rig) grpcCount(code string) float64 {
	mfs, _ := r.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != upstream.MetricGRPCResponses {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" && l.GetValue() == code {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func h2cBackend() string { return upstream.BackendFilterName + `("` + rpcKey + `", "protocol=h2c")` }

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// A unary call and its trailers (status, message, custom metadata) go
// through h2c both ways; te: trailers reaches the pod (grpc-go refuses
// calls without it... and answers them anyway; the trailers prove the
// path).
func TestGRPCUnaryOverH2C(t *testing.T) {
	pod := startPod(t, nil)
	r := newRig(t, upstream.Config{}, h2cBackend(), pod.addr)
	c := r.client(t)
	var trailer metadata.MD
	resp, err := c.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("ping")}}, grpc.Trailer(&trailer))
	if err != nil {
		t.Fatalf("unary call: %v", err)
	}
	if string(resp.GetPayload().GetBody()) != "ping" || resp.GetServerId() != pod.addr {
		t.Errorf("answer %q from %q, want ping from %s", resp.GetPayload().GetBody(), resp.GetServerId(), pod.addr)
	}
	if got := trailer.Get("x-pod"); len(got) != 1 || got[0] != pod.addr {
		t.Errorf("trailer x-pod = %v, want [%s]: the pod's trailers did not reach the client", got, pod.addr)
	}
	// An application error: its status and message come in the trailers
	// (trailers-only) and reach the client as they are.
	_, err = c.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "no such thing"}})
	if s, _ := status.FromError(err); s.Code() != codes.NotFound || s.Message() != "no such thing" {
		t.Errorf("application error = %v, want NotFound: no such thing", err)
	}
	// The health service of the same pod.
	cc, _ := grpc.NewClient("passthrough:///"+r.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer cc.Close()
	h, err := healthgrpc.NewHealthClient(cc).Check(callCtx(t), &healthgrpc.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthgrpc.HealthCheckResponse_SERVING {
		t.Errorf("health check: %v %v", h, err)
	}
	if ok, nf := r.grpcCount("OK"), r.grpcCount("NOT_FOUND"); ok != 2 || nf != 1 {
		t.Errorf("%s: OK %v, NOT_FOUND %v; want 2 and 1", upstream.MetricGRPCResponses, ok, nf)
	}
	if st := r.u.Breakers().Snapshot(pod.addr); st.Failures != 0 {
		t.Errorf("breaker failures %d after answers the application chose, want 0", st.Failures)
	}
}

// Server-streamed messages reach the client as the pod sends them: the
// pod sends its second message only once the client has the first.
// Between them the pod waits three times the route's response header
// timeout: the stream, whose headers came long before, is not cut.
func TestGRPCServerStreamIsNeitherBufferedNorCut(t *testing.T) {
	pod := startPod(t, nil)
	got := make(chan struct{})
	pod.beforeSend = func(i int) {
		if i == 1 {
			select {
			case <-got:
			case <-time.After(5 * time.Second): // the stream was buffered: the client never saw message 0
			}
		}
	}
	r := newRig(t, upstream.Config{}, upstream.PolicyFilterName+`("response-header-timeout=100ms") -> `+h2cBackend(), pod.addr)
	stream, err := r.client(t).StreamingOutputCall(callCtx(t), &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{
		{Size: 10}, {Size: 20, IntervalUs: 300_000}, {Size: 30},
	}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	m, err := stream.Recv()
	if err != nil || len(m.GetPayload().GetBody()) != 10 {
		t.Fatalf("first message: %v %v", m, err)
	}
	close(got)
	if time.Since(start) > 3*time.Second {
		t.Errorf("the first message took %v: held back until later ones", time.Since(start))
	}
	for _, size := range []int{20, 30} {
		m, err := stream.Recv()
		if err != nil || len(m.GetPayload().GetBody()) != size {
			t.Fatalf("message of %d bytes: %v %v (cut by the response header timeout?)", size, m, err)
		}
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("end of stream: %v, want io.EOF (status OK)", err)
	}
	if tr := stream.Trailer(); strings.Join(tr.Get("x-sent"), ",") != "all" {
		t.Errorf("stream trailers %v, want x-sent: all", tr)
	}
}

// A bidirectional stream: each request message reaches the pod while the
// client keeps its side open, waiting for the answer (a body buffered
// until its end would hang here).
func TestGRPCBidiStreamIsForwardedAsItComes(t *testing.T) {
	pod := startPod(t, nil)
	r := newRig(t, upstream.Config{}, h2cBackend(), pod.addr)
	stream, err := r.client(t).FullDuplexCall(callCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int32{5, 7, 70 << 10, 9} { // one message larger than the replay copy
		if err := stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: size}}}); err != nil {
			t.Fatal(err)
		}
		m, err := stream.Recv()
		if err != nil || len(m.GetPayload().GetBody()) != int(size) {
			t.Fatalf("answer to message %d: %v", size, err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("end: %v, want io.EOF", err)
	}
}

// A pod answering UNAVAILABLE before running calls (trailers-only): each
// such answer is a breaker failure and is retried on the other pod, so
// every call succeeds; its breaker opens and it gets no more calls.
func TestGRPCUnavailableOpensBreaker(t *testing.T) {
	bad, good := startPod(t, nil), startPod(t, nil)
	bad.mode.Store(podUnavailable)
	r := newRig(t, upstream.Config{Breaker: upstream.BreakerConfig{ConsecutiveFailures: 3, OpenFor: time.Minute}},
		h2cBackend(), bad.addr, good.addr)
	c := r.client(t)
	call := func() {
		t.Helper()
		var trailer metadata.MD
		if _, err := c.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("x")}}, grpc.Trailer(&trailer)); err != nil {
			t.Fatalf("call failed although another pod is fine: %v", err)
		}
		if got := trailer.Get("x-pod"); len(got) != 1 || got[0] != good.addr {
			t.Fatalf("answered by %v, want %s", got, good.addr)
		}
	}
	for r.u.Breakers().State(bad.addr) != gobreaker.StateOpen {
		if bad.calls.Load() > 20 {
			t.Fatalf("breaker still %v after %d UNAVAILABLE answers", r.u.Breakers().State(bad.addr), bad.calls.Load())
		}
		call()
	}
	before := bad.calls.Load()
	for range 20 {
		call()
	}
	if bad.calls.Load() != before {
		t.Errorf("the pod with an open breaker got %d more calls", bad.calls.Load()-before)
	}
	if n := r.grpcCount("UNAVAILABLE"); n < 3 {
		t.Errorf("UNAVAILABLE counted %v times, want >= 3", n)
	}
}

// UNAVAILABLE in the trailers, after the pod sent its headers: the call
// ran (or began), so it is not retried and the client gets the status;
// the breaker still counts it, once the trailers arrive.
func TestGRPCUnavailableInTrailersCountsButIsNotRetried(t *testing.T) {
	pod := startPod(t, nil)
	pod.mode.Store(podUnavailableLate)
	r := newRig(t, upstream.Config{Breaker: upstream.BreakerConfig{ConsecutiveFailures: 3, OpenFor: time.Minute}},
		h2cBackend(), pod.addr)
	c := r.client(t)
	for i := range 3 {
		_, err := c.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
		if s, _ := status.FromError(err); s.Code() != codes.Unavailable || s.Message() != "lost its database" {
			t.Fatalf("call %d: %v, want the pod's UNAVAILABLE", i, err)
		}
	}
	if n := pod.calls.Load(); n != 3 {
		t.Errorf("the pod got %d calls for 3: a call that began was retried", n)
	}
	if st := r.u.Breakers().State(pod.addr); st != gobreaker.StateOpen {
		t.Errorf("breaker %v after 3 UNAVAILABLE trailers, want open", st)
	}
}

// A pod killed in the middle of a stream: that stream fails, a stream on
// the other pod goes on to its end.
func TestGRPCPodKilledMidStream(t *testing.T) {
	a, b := startPod(t, nil), startPod(t, nil)
	release := make(chan struct{})
	for _, p := range []*rpcPod{a, b} {
		p.beforeSend = func(i int) {
			if i == 1 {
				<-release
			}
		}
	}
	r := newRig(t, upstream.Config{}, upstream.BackendFilterName+`("`+rpcKey+`", "roundRobin", "protocol=h2c")`, a.addr, b.addr)
	c := r.client(t)
	streams := map[string]grpc.ServerStreamingClient[testgrpc.StreamingOutputCallResponse]{}
	for len(streams) < 2 {
		s, err := c.StreamingOutputCall(callCtx(t), &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}, {Size: 2}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
		h, _ := s.Header()
		streams[h.Get("x-pod")[0]] = s
	}
	a.srv.Stop() // closes its connections: the router's to it among them
	done := make(chan error, 1)
	go func() { _, err := streams[a.addr].Recv(); done <- err }()
	select {
	case err := <-done:
		if err == nil || err == io.EOF {
			t.Fatalf("the killed pod's stream ended with %v, want an error", err)
		}
		// UNAVAILABLE, from the router: not INTERNAL, which a stream
		// ending without trailers would give, and which nothing retries.
		if s, _ := status.FromError(err); s.Code() != codes.Unavailable {
			t.Fatalf("the killed pod's stream ended with %v, want UNAVAILABLE", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the killed pod's stream hangs")
	}
	close(release)
	if m, err := streams[b.addr].Recv(); err != nil || len(m.GetPayload().GetBody()) != 2 {
		t.Fatalf("the other pod's stream: %v %v", m, err)
	}
	if _, err := streams[b.addr].Recv(); err != io.EOF {
		t.Fatalf("the other pod's stream ended with %v, want io.EOF", err)
	}
}

// TLS toward pods: the pod's certificate names its Service
// (rpc.default.svc), the router trusts its CA and checks that name (sent
// as SNI, pods being reached by IP); gRPC negotiates HTTP/2 through ALPN.
// A route naming another server name fails the handshake and the call;
// InsecureSkipVerify accepts it.
func TestGRPCOverTLS(t *testing.T) {
	certPEM, keyPEM := testcerts.SelfSigned(t, "rpc.default.svc")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	var sni atomic.Value
	pod := startPod(t, credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert},
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) { sni.Store(h.ServerName); return nil, nil }}))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	tlsBackend := func(name string) string {
		return upstream.BackendFilterName + `("` + rpcKey + `", "protocol=tls", "server-name=` + name + `")`
	}

	r := newRig(t, upstream.Config{TLS: upstream.TLSConfig{RootCAs: roots}}, tlsBackend("rpc.default.svc"), pod.addr)
	c := r.client(t)
	var trailer metadata.MD
	resp, err := c.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("secret")}}, grpc.Trailer(&trailer))
	if err != nil || string(resp.GetPayload().GetBody()) != "secret" {
		t.Fatalf("unary over TLS: %v %v", resp, err)
	}
	if sni.Load() != "rpc.default.svc" {
		t.Errorf("SNI %v, want rpc.default.svc", sni.Load())
	}
	if len(trailer.Get("x-pod")) != 1 {
		t.Errorf("trailers over TLS: %v", trailer)
	}
	stream, err := c.StreamingOutputCall(callCtx(t), &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 3}, {Size: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{3, 4} {
		if m, err := stream.Recv(); err != nil || len(m.GetPayload().GetBody()) != n {
			t.Fatalf("stream over TLS: %v %v", m, err)
		}
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("stream over TLS ended with %v", err)
	}

	wrong := newRig(t, upstream.Config{TLS: upstream.TLSConfig{RootCAs: roots}}, tlsBackend("other.default.svc"), pod.addr)
	if _, err := wrong.client(t).UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err == nil {
		t.Error("a pod whose certificate does not name the route's server name was trusted")
	}
	untrusted := newRig(t, upstream.Config{}, tlsBackend("rpc.default.svc"), pod.addr)
	if _, err := untrusted.client(t).UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err == nil {
		t.Error("a pod whose certificate no trusted CA signed was trusted")
	}
	skip := newRig(t, upstream.Config{TLS: upstream.TLSConfig{InsecureSkipVerify: true}}, tlsBackend("other.default.svc"), pod.addr)
	if _, err := skip.client(t).UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err != nil {
		t.Errorf("with InsecureSkipVerify: %v", err)
	}
}

// An HTTP/1.1 client gets the pod's trailers as the trailer of the
// chunked answer (here a gRPC call made by hand, answered over h2c).
func TestTrailersReachHTTP1Client(t *testing.T) {
	pod := startPod(t, nil)
	r := newRig(t, upstream.Config{}, h2cBackend(), pod.addr)
	msg, err := proto.Marshal(&testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("by hand")}})
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
	frame = append(frame, msg...)
	req, _ := http.NewRequest(http.MethodPost, "http://"+r.addr+"/grpc.testing.TestService/UnaryCall", io.NopCloser(bytes.NewReader(frame)))
	req.ContentLength = -1 // chunked, as a stream
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 1 || len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("answer %s %v, want chunked HTTP/1.1", resp.Proto, resp.TransferEncoding)
	}
	var out testgrpc.SimpleResponse
	if len(body) < 5 || proto.Unmarshal(body[5:], &out) != nil || string(out.GetPayload().GetBody()) != "by hand" {
		t.Errorf("body %q is not the echo", body)
	}
	if resp.Trailer.Get("Grpc-Status") != "0" || resp.Trailer.Get("X-Pod") != pod.addr {
		t.Errorf("trailers %v, want grpc-status 0 and x-pod %s", resp.Trailer, pod.addr)
	}
}

// HTTP/2 connections to pods are pooled like HTTP/1 ones: one connection
// carries many calls, and it is closed once idle for the proxy's
// BackendIdleTimeout, as HTTP/1 keep-alive connections are.
func TestH2CConnectionsPooledAndClosedWhenIdle(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opened atomic.Int32
	closed := make(chan struct{}, 64)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ProtoMajor != 2 {
				http.Error(w, "want HTTP/2", http.StatusHTTPVersionNotSupported)
				return
			}
			io.WriteString(w, "h2c")
		}),
		Protocols: new(http.Protocols),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				opened.Add(1)
			case http.StateClosed:
				closed <- struct{}{}
			}
		},
	}
	srv.Protocols.SetUnencryptedHTTP2(true) // h2c only: an HTTP/1 request fails
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	r := newRigWith(t, upstream.Config{}, h2cBackend(), proxy.Options{BackendIdleTimeout: 300 * time.Millisecond}, l.Addr().String())
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	for range 20 {
		resp, err := (&http.Client{Transport: tr}).Get("http://" + r.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "h2c" {
			t.Fatalf("answer %d %q, want the pod's over h2c", resp.StatusCode, body)
		}
	}
	if n := opened.Load(); n != 1 {
		t.Errorf("%d connections to the pod for 20 sequential requests, want 1", n)
	}
	start := time.Now()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle HTTP/2 connection to the pod was never closed")
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Errorf("the connection closed after %v, before the idle timeout", waited)
	}
}

// A pod leaving as Kubernetes stops it (GOAWAY, in-flight calls finish,
// the listener closes) while unary calls keep coming: no call fails. Calls
// the pod's GOAWAY came before, or that find it gone, go to the other pod.
func TestGRPCPodGracefulStopFailsNoCall(t *testing.T) {
	a, b := startPod(t, nil), startPod(t, nil)
	r := newRig(t, upstream.Config{}, upstream.BackendFilterName+`("`+rpcKey+`", "roundRobin", "protocol=h2c")`, a.addr, b.addr)
	c := r.client(t)
	var calls, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	const workers = 8
	for range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-stop:
					return
				default:
				}
				calls.Add(1)
				if _, err := c.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("x")}}); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	for a.calls.Load() < 50 || b.calls.Load() < 50 {
		runtime.Gosched()
	}
	a.srv.GracefulStop() // returns once its in-flight calls are done
	before := b.calls.Load()
	for b.calls.Load() < before+200 {
		runtime.Gosched()
	}
	close(stop)
	for range workers {
		<-done
	}
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d calls failed while a pod stopped; first: %v", n, calls.Load(), firstErr.Load())
	}
}

// A client's request trailers reach the pod (skipper builds the outgoing
// request from headers and body only), over h2c; and a pod speaking only
// HTTP/1.1 over TLS is reached over TLS with HTTP/1.1 (ALPN), its
// announced trailers passed back.
func TestRequestTrailersAndHTTP1OverTLS(t *testing.T) {
	type seen struct {
		proto   int
		tls     bool
		trailer string
		body    string
	}
	got := make(chan seen, 1)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- seen{proto: r.ProtoMajor, tls: r.TLS != nil, trailer: r.Trailer.Get("X-Checksum"), body: string(body)}
		w.Header().Set("Trailer", "X-Served")
		io.WriteString(w, "ok")
		w.Header().Set("X-Served", "yes")
	})
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	h2c := &http.Server{Handler: handler, Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	lh := listen()
	go h2c.Serve(lh)
	t.Cleanup(func() { h2c.Close() })

	certPEM, keyPEM := testcerts.SelfSigned(t, "web.default.svc")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	h1 := &http.Server{Handler: handler}
	lt := tls.NewListener(listen(), &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
	go h1.Serve(lt)
	t.Cleanup(func() { h1.Close() })

	for _, tc := range []struct {
		name, args, pod string
		want            seen
	}{
		{"h2c", `, "protocol=h2c"`, lh.Addr().String(), seen{proto: 2, trailer: "abc123", body: "payload"}},
		{"tls", `, "protocol=tls", "server-name=web.default.svc"`, lt.Addr().String(), seen{proto: 1, tls: true, trailer: "abc123", body: "payload"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, upstream.Config{TLS: upstream.TLSConfig{RootCAs: roots}}, upstream.BackendFilterName+`("`+rpcKey+`"`+tc.args+`)`, tc.pod)
			req, _ := http.NewRequest(http.MethodPost, "http://"+r.addr+"/", io.NopCloser(strings.NewReader("payload")))
			req.ContentLength = -1
			req.Trailer = http.Header{"X-Checksum": {"abc123"}}
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != "ok" {
				t.Fatalf("answer %d %q", resp.StatusCode, body)
			}
			if s := <-got; s != tc.want {
				t.Errorf("the pod saw %+v, want %+v", s, tc.want)
			}
			if resp.Trailer.Get("X-Served") != "yes" {
				t.Errorf("response trailers %v, want X-Served: yes (header %v, te %v)", resp.Trailer, resp.Header, resp.TransferEncoding)
			}
		})
	}
}

// A gRPC stream counts as in flight on its pod until it ends, not only
// until its headers (least in-flight sees the streams a pod serves).
func TestGRPCStreamInFlightUntilItEnds(t *testing.T) {
	pod := startPod(t, nil)
	release := make(chan struct{})
	pod.beforeSend = func(i int) {
		if i == 1 {
			<-release
		}
	}
	r := newRig(t, upstream.Config{}, h2cBackend(), pod.addr)
	stream, err := r.client(t).StreamingOutputCall(callCtx(t), &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}, {Size: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if n := r.u.Breakers().Snapshot(pod.addr).InFlight; n != 1 {
		t.Errorf("%d in flight during the stream, want 1", n)
	}
	close(release)
	for {
		if _, err := stream.Recv(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	// The router settles the stream when it reads the trailers, which
	// the client may see first.
	deadline := time.Now().Add(5 * time.Second)
	for r.u.Breakers().Snapshot(pod.addr).InFlight != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d in flight after the stream ended, want 0", r.u.Breakers().Snapshot(pod.addr).InFlight)
		}
		runtime.Gosched()
	}
}

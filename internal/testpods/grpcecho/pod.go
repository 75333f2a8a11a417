package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Metadata keys of the pod's answers and requests (see doc.go).
const (
	podKey     = "x-pod"
	countKey   = "x-echo-count"
	trailerKey = "x-echo-trailer"
)

// mode is the pod-wide behaviour set through the control endpoint.
type mode string

const (
	modeOK          mode = "ok"
	modeUnavailable mode = "unavailable"
	modeNotServing  mode = "notserving"
)

// Limits keep a typo in a request from making the pod allocate or stream
// for ever.
const (
	maxPayload  = 4 << 20
	maxMessages = 100000
	maxInterval = time.Minute
)

// pod is the state every server and the control endpoint share.
type pod struct {
	testpb.UnimplementedTestServiceServer
	name     string
	log      *slog.Logger
	health   *health.Server
	mode     atomic.Pointer[mode]
	calls    atomic.Int64
	inFlight atomic.Int64
}

func newPod(name string, log *slog.Logger) *pod {
	p := &pod{name: name, log: log, health: health.NewServer()}
	p.setMode(modeOK)
	return p
}

// newServer is one gRPC server (h2c, or TLS with a credentials option)
// with the pod's services.
func (p *pod) newServer(opts ...grpc.ServerOption) *grpc.Server {
	opts = append(opts, grpc.ChainUnaryInterceptor(p.unaryGate), grpc.ChainStreamInterceptor(p.streamGate))
	s := grpc.NewServer(opts...)
	testpb.RegisterTestServiceServer(s, p)
	healthpb.RegisterHealthServer(s, p.health)
	return s
}

func (p *pod) setMode(m mode) {
	p.mode.Store(&m)
	st := healthpb.HealthCheckResponse_SERVING
	if m == modeNotServing {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	p.health.SetServingStatus("", st)
	p.health.SetServingStatus(testpb.TestService_ServiceDesc.ServiceName, st)
	p.log.Info("mode", "mode", string(m))
}

// testMethod: a TestService call, counted and refused in mode
// unavailable; health checks are neither (a pod refusing work is still
// alive, and the counts are the tests' calls).
func testMethod(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/"+testpb.TestService_ServiceDesc.ServiceName+"/")
}

// admit counts a call; in mode unavailable it returns the call's answer:
// a status before any header, which gRPC sends as a trailers-only
// response.
func (p *pod) admit() error {
	p.calls.Add(1)
	if *p.mode.Load() == modeUnavailable {
		return status.Errorf(codes.Unavailable, "pod %s refuses calls (mode unavailable)", p.name)
	}
	return nil
}

func (p *pod) unaryGate(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !testMethod(info.FullMethod) {
		return handler(ctx, req)
	}
	if err := p.admit(); err != nil {
		return nil, err
	}
	p.inFlight.Add(1)
	defer p.inFlight.Add(-1)
	return handler(ctx, req)
}

func (p *pod) streamGate(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !testMethod(info.FullMethod) {
		return handler(srv, ss)
	}
	if err := p.admit(); err != nil {
		return err
	}
	p.inFlight.Add(1)
	defer p.inFlight.Add(-1)
	return handler(srv, ss)
}

// begin sends the header metadata and returns the trailer to set at the
// end of the call.
func (p *pod) begin(ctx context.Context) metadata.MD {
	grpc.SetHeader(ctx, metadata.Pairs(podKey, p.name))
	tr := metadata.Pairs(podKey, p.name)
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(trailerKey); len(v) > 0 {
			tr.Set(trailerKey, v...)
		}
	}
	return tr
}

func echoStatus(s *testpb.EchoStatus) error {
	if s == nil || s.Code == 0 {
		return nil
	}
	return status.Error(codes.Code(s.Code), s.Message)
}

func payload(size int32) (*testpb.Payload, error) {
	if size < 0 || size > maxPayload {
		return nil, status.Errorf(codes.InvalidArgument, "payload size %d not in [0, %d]", size, maxPayload)
	}
	return &testpb.Payload{Body: make([]byte, size)}, nil
}

func (p *pod) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	tr := p.begin(ctx)
	tr.Set(countKey, "1")
	grpc.SetTrailer(ctx, tr)
	return &testpb.Empty{}, nil
}

func (p *pod) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	tr := p.begin(ctx)
	if err := echoStatus(req.ResponseStatus); err != nil {
		tr.Set(countKey, "0")
		grpc.SetTrailer(ctx, tr)
		return nil, err
	}
	body, err := payload(req.ResponseSize)
	if err != nil {
		return nil, err
	}
	tr.Set(countKey, "1")
	grpc.SetTrailer(ctx, tr)
	return &testpb.SimpleResponse{Payload: body, Hostname: p.name, ServerId: p.name}, nil
}

func (p *pod) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	ctx := stream.Context()
	tr := p.begin(ctx)
	n, err := p.sendAll(ctx, req.ResponseParameters, stream.Send)
	tr.Set(countKey, strconv.Itoa(n))
	stream.SetTrailer(tr)
	if err != nil {
		return err
	}
	return echoStatus(req.ResponseStatus)
}

func (p *pod) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	ctx := stream.Context()
	tr := p.begin(ctx)
	total := 0
	defer func() {
		tr.Set(countKey, strconv.Itoa(total))
		stream.SetTrailer(tr)
	}()
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) { // the client half-closed: the call is over
				return nil
			}
			return err
		}
		n, err := p.sendAll(ctx, req.ResponseParameters, stream.Send)
		total += n
		if err != nil {
			return err
		}
		if err := echoStatus(req.ResponseStatus); err != nil {
			return err
		}
	}
}

// sendAll sends one message per parameter, each after its interval; it
// returns how many were sent.
func (p *pod) sendAll(ctx context.Context, params []*testpb.ResponseParameters, send func(*testpb.StreamingOutputCallResponse) error) (int, error) {
	if len(params) > maxMessages {
		return 0, status.Errorf(codes.InvalidArgument, "%d messages asked, at most %d", len(params), maxMessages)
	}
	var timer *time.Timer
	for i, rp := range params {
		if d := time.Duration(rp.IntervalUs) * time.Microsecond; d > 0 {
			if d > maxInterval {
				return i, status.Errorf(codes.InvalidArgument, "interval %s over %s", d, maxInterval)
			}
			if timer == nil {
				timer = time.NewTimer(d)
				defer timer.Stop()
			} else {
				timer.Reset(d)
			}
			select {
			case <-ctx.Done():
				return i, status.FromContextError(ctx.Err()).Err()
			case <-timer.C:
			}
		}
		body, err := payload(rp.Size)
		if err != nil {
			return i, err
		}
		if err := send(&testpb.StreamingOutputCallResponse{Payload: body}); err != nil {
			return i, err
		}
	}
	return len(params), nil
}

// stats is what GET /stats answers.
type stats struct {
	Mode     mode  `json:"mode"`
	Calls    int64 `json:"calls"`
	InFlight int64 `json:"inFlight"`
}

func (p *pod) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		res, err := p.health.Check(r.Context(), &healthpb.HealthCheckRequest{})
		if err != nil || res.Status != healthpb.HealthCheckResponse_SERVING {
			http.Error(w, "not serving", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("SERVING\n"))
	})
	mux.HandleFunc("POST /mode", func(w http.ResponseWriter, r *http.Request) {
		m := mode(r.URL.Query().Get("value"))
		switch m {
		case modeOK, modeUnavailable, modeNotServing:
		default:
			http.Error(w, "value must be ok, unavailable or notserving", http.StatusBadRequest)
			return
		}
		p.setMode(m)
		writeJSON(w, p.stats())
	})
	mux.HandleFunc("GET /mode", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, p.stats()) })
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, p.stats()) })
	return mux
}

func (p *pod) stats() stats {
	return stats{Mode: *p.mode.Load(), Calls: p.calls.Load(), InFlight: p.inFlight.Load()}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

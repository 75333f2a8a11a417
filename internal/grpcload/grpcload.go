package grpcload

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// PodKey is the metadata key (header and trailer) naming the pod that
// answered; CountKey the trailer counting the messages it sent; TrailerKey
// the request metadata the pod sends back as a trailer.
const (
	PodKey     = "x-pod"
	CountKey   = "x-echo-count"
	TrailerKey = "x-echo-trailer"
)

// Dial makes a client for addr (host:port of a router's listener) that
// sends authority as :authority (the Host an Ingress matches). tlsConf
// nil: h2c with prior knowledge; else TLS with ALPN h2 (its ServerName
// is the SNI).
func Dial(addr, authority string, tlsConf *tls.Config) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if tlsConf != nil {
		creds = credentials.NewTLS(tlsConf)
	}
	// passthrough: the address is dialled as given, no DNS resolver, one
	// subchannel.
	return grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds), grpc.WithAuthority(authority))
}

// Reply is what one call got.
type Reply struct {
	Pod      string      // the x-pod header, else trailer
	Header   metadata.MD // header metadata
	Trailer  metadata.MD // trailer metadata
	Messages int         // response messages received
}

// Unary calls TestService.UnaryCall with md as request metadata.
func Unary(ctx context.Context, conn *grpc.ClientConn, req *testpb.SimpleRequest, md ...string) (Reply, error) {
	var r Reply
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	res, err := testpb.NewTestServiceClient(conn).UnaryCall(ctx, req, grpc.Header(&r.Header), grpc.Trailer(&r.Trailer))
	if err == nil && res != nil {
		r.Messages = 1
	}
	r.Pod = first(r.Header, r.Trailer)
	return r, err
}

// Stream calls TestService.StreamingOutputCall for n messages of size
// bytes, interval apart, and reads them all. onMessage (may be nil) is
// called after each message with the header metadata.
func Stream(ctx context.Context, conn *grpc.ClientConn, n int, size int32, interval time.Duration, onMessage func(i int, header metadata.MD), md ...string) (Reply, error) {
	var r Reply
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	req := &testpb.StreamingOutputCallRequest{}
	for range n {
		req.ResponseParameters = append(req.ResponseParameters, &testpb.ResponseParameters{Size: size, IntervalUs: int32(interval / time.Microsecond)})
	}
	stream, err := testpb.NewTestServiceClient(conn).StreamingOutputCall(ctx, req)
	if err != nil {
		return r, err
	}
	for {
		_, err := stream.Recv()
		if r.Header == nil {
			r.Header, _ = stream.Header()
		}
		if err != nil {
			r.Trailer = stream.Trailer()
			r.Pod = first(r.Header, r.Trailer)
			if errors.Is(err, io.EOF) {
				return r, nil
			}
			return r, err
		}
		r.Messages++
		if onMessage != nil {
			onMessage(r.Messages, r.Header)
		}
	}
}

func first(mds ...metadata.MD) string {
	for _, md := range mds {
		if v := md.Get(PodKey); len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// Kind is what Start sends.
type Kind int

const (
	// UnaryCalls: TestService.UnaryCall, 100 bytes back.
	UnaryCalls Kind = iota
	// StreamCalls: TestService.StreamingOutputCall, StreamMessages
	// messages StreamInterval apart.
	StreamCalls
)

// Options shape a load.
type Options struct {
	Kind Kind
	// Rate is calls per second (default 100).
	Rate float64
	// Timeout is each call's deadline (default 10 s).
	Timeout time.Duration
	// MaxInFlight caps concurrent calls; a tick finding it reached counts
	// as "overload" (default 256).
	MaxInFlight int
	// StreamMessages (default 10) and StreamInterval (default 20 ms) shape
	// a stream; a stream is OK only if every message and status OK came.
	StreamMessages int
	StreamInterval time.Duration
}

func (o Options) withDefaults() Options {
	if o.Rate <= 0 {
		o.Rate = 100
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 256
	}
	if o.StreamMessages <= 0 {
		o.StreamMessages = 10
	}
	if o.StreamInterval <= 0 {
		o.StreamInterval = 20 * time.Millisecond
	}
	return o
}

// Result counts a load's calls. Safe to read after Stop.
type Result struct {
	Sent, OK, Failed int
	// ByCode counts failed calls by gRPC code name ("UNAVAILABLE"), plus
	// "overload" and "short stream" (status OK but messages missing).
	ByCode map[string]int
	// First is the first error text per kind.
	First map[string]string
	// Pods counts successful calls by answering pod.
	Pods map[string]int
	// Elapsed is how long the load ran.
	Elapsed time.Duration
	lat     []time.Duration
}

// Percentile is the p-th percentile latency of the successful calls.
func (r *Result) Percentile(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[int(float64(len(r.lat)-1)*p/100)]
}

// Throughput is successful calls per second.
func (r *Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

func (r *Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sent %d, ok %d, failed %d; latency p50 %s p99 %s max %s", r.Sent, r.OK, r.Failed,
		r.Percentile(50).Round(time.Microsecond), r.Percentile(99).Round(time.Microsecond), r.Percentile(100).Round(time.Microsecond))
	kinds := make([]string, 0, len(r.ByCode))
	for k := range r.ByCode {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(&b, "; %s: %d (first: %s)", k, r.ByCode[k], r.First[k])
	}
	return b.String()
}

// Load is a running load.
type Load struct {
	mu     sync.Mutex
	res    Result
	start  time.Time
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func newLoad() *Load {
	return &Load{res: Result{ByCode: map[string]int{}, First: map[string]string{}, Pods: map[string]int{}}, start: time.Now(), done: make(chan struct{})}
}

// Start sends calls over conn at o.Rate until Stop.
func Start(conn *grpc.ClientConn, o Options) *Load {
	o = o.withDefaults()
	l := newLoad()
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go func() {
		defer close(l.done)
		var wg sync.WaitGroup
		defer wg.Wait()
		slots := make(chan struct{}, o.MaxInFlight)
		tick := time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			select {
			case slots <- struct{}{}:
			default:
				l.record("", 0, errOverload)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				// Calls in flight at Stop run to their end: Stop counts
				// them rather than cutting them.
				l.record(call(context.Background(), conn, o))
			}()
		}
	}()
	return l
}

var (
	errOverload    = errors.New("overload")
	errShortStream = errors.New("short stream")
)

func call(ctx context.Context, conn *grpc.ClientConn, o Options) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	start := time.Now()
	var r Reply
	var err error
	switch o.Kind {
	case StreamCalls:
		r, err = Stream(ctx, conn, o.StreamMessages, 100, o.StreamInterval, nil)
		if err == nil && r.Messages != o.StreamMessages {
			err = fmt.Errorf("%w: %d of %d messages", errShortStream, r.Messages, o.StreamMessages)
		}
	default:
		r, err = Unary(ctx, conn, &testpb.SimpleRequest{ResponseSize: 100})
	}
	return r.Pod, time.Since(start), err
}

// Kind of a failed call: its gRPC code name, or overload / short stream.
func kindOf(err error) string {
	switch {
	case errors.Is(err, errOverload):
		return "overload"
	case errors.Is(err, errShortStream):
		return "short stream"
	}
	return strings.ToUpper(codeName(status.Code(err)))
}

func codeName(c codes.Code) string {
	// codes.Code's String is "Unavailable"; gRPC's spelling is UNAVAILABLE.
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (l *Load) record(pod string, took time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.res.Sent++
	if err != nil {
		l.res.Failed++
		k := kindOf(err)
		l.res.ByCode[k]++
		if _, ok := l.res.First[k]; !ok {
			l.res.First[k] = err.Error()
		}
		return
	}
	l.res.OK++
	l.res.Pods[pod]++
	l.res.lat = append(l.res.lat, took)
}

// Snapshot returns the calls sent and failed so far.
func (l *Load) Snapshot() (sent, failed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.res.Sent, l.res.Failed
}

// Stop stops sending, waits for the calls in flight and returns the
// result.
func (l *Load) Stop() *Result {
	l.once.Do(func() {
		l.cancel()
		<-l.done
		l.mu.Lock()
		l.res.Elapsed = time.Since(l.start)
		slices.Sort(l.res.lat)
		l.mu.Unlock()
	})
	return &l.res
}

// Saturate runs workers goroutines each calling back to back over the
// connections (round robin) for d: the closed loop that measures
// throughput. Latencies are of successful calls.
func Saturate(conns []*grpc.ClientConn, workers int, d time.Duration, o Options) *Result {
	o = o.withDefaults()
	l := newLoad()
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := conns[i%len(conns)]
			for time.Now().Before(deadline) {
				l.record(call(context.Background(), conn, o))
			}
		}()
	}
	wg.Wait()
	l.res.Elapsed = time.Since(l.start)
	slices.Sort(l.res.lat)
	return &l.res
}

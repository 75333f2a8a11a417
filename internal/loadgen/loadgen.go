package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Target is what each request asks for.
type Target struct {
	Method string // default GET
	URL    string
	Host   string // Host header; empty: from URL
	Body   []byte // request body, sent with a Content-Length; nil: none
}

// Options shape the load.
type Options struct {
	// Rate is requests per second. Default 100.
	Rate float64
	// Timeout bounds each request. Default 5 s.
	Timeout time.Duration
	// MaxInFlight caps concurrent requests; a tick finding the cap reached
	// counts as "overload" rather than queueing. Default 256.
	MaxInFlight int
	// OK decides whether an answer counts as success. Default: status 200.
	OK func(status int) bool
	// Connections is the size of the keep-alive pool. Default 16.
	Connections int
}

// Result is what happened. Safe to read after Stop.
type Result struct {
	Sent     int
	OK       int
	Failed   int
	ByStatus map[int]int       // failed answers by HTTP status
	ByError  map[string]int    // failed requests by error kind
	First    map[string]string // the first full error text per kind, for diagnosis
	lat      []time.Duration
}

// Percentile returns the p-th percentile latency of all requests (0 if none).
func (r *Result) Percentile(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(float64(len(r.lat)-1) * p / 100)
	return r.lat[i]
}

// Max returns the largest latency.
func (r *Result) Max() time.Duration { return r.Percentile(100) }

func (r *Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sent %d, ok %d, failed %d; latency p50 %s p99 %s max %s",
		r.Sent, r.OK, r.Failed, r.Percentile(50).Round(time.Microsecond), r.Percentile(99).Round(time.Microsecond), r.Max().Round(time.Microsecond))
	if len(r.ByStatus) > 0 {
		codes := make([]int, 0, len(r.ByStatus))
		for c := range r.ByStatus {
			codes = append(codes, c)
		}
		sort.Ints(codes)
		for _, c := range codes {
			fmt.Fprintf(&b, "; status %d: %d", c, r.ByStatus[c])
		}
	}
	for _, kind := range sortedKeys(r.ByError) {
		fmt.Fprintf(&b, "; %s: %d (first: %s)", kind, r.ByError[kind], r.First[kind])
	}
	return b.String()
}

// Breakdown lists failures by status, then by error kind, e.g.
// "502: 12, connection reset: 1"; empty when there are none.
func Breakdown(byStatus map[int]int, byError map[string]int) string {
	var parts []string
	codes := make([]int, 0, len(byStatus))
	for c := range byStatus {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%d: %d", c, byStatus[c]))
	}
	for _, k := range sortedKeys(byError) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, byError[k]))
	}
	return strings.Join(parts, ", ")
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Load is a running generator.
type Load struct {
	ok     func(status int) bool
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	res    Result
}

// Start begins sending; Stop ends it and returns the result.
func Start(target Target, o Options) *Load {
	if o.Rate <= 0 {
		o.Rate = 100
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = 256
	}
	if o.OK == nil {
		o.OK = func(s int) bool { return s == http.StatusOK }
	}
	if o.Connections == 0 {
		o.Connections = 16
	}
	if target.Method == "" {
		target.Method = http.MethodGet
	}
	client := &http.Client{
		Timeout: o.Timeout,
		Transport: &http.Transport{
			Proxy:               nil, // only ever loopback or our own test namespaces
			MaxIdleConnsPerHost: o.Connections,
			MaxConnsPerHost:     o.MaxInFlight,
			IdleConnTimeout:     90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{ok: o.OK, cancel: cancel, done: make(chan struct{}),
		res: Result{ByStatus: map[int]int{}, ByError: map[string]int{}, First: map[string]string{}}}
	go l.run(ctx, client, target, o)
	return l
}

func (l *Load) run(ctx context.Context, client *http.Client, target Target, o Options) {
	defer close(l.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, o.MaxInFlight)
	interval := time.Duration(float64(time.Second) / o.Rate)
	tick := time.NewTicker(interval)
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
			l.record(0, 0, errOverload)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			status, took, err := once(client, target)
			l.record(status, took, err)
		}()
	}
}

var errOverload = errors.New("generator at its in-flight cap")

func once(client *http.Client, target Target) (int, time.Duration, error) {
	var body io.Reader
	if target.Body != nil {
		body = bytes.NewReader(target.Body)
	}
	req, err := http.NewRequest(target.Method, target.URL, body)
	if err != nil {
		return 0, 0, err
	}
	if target.Host != "" {
		req.Host = target.Host
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, time.Since(start), err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(start), err
}

func (l *Load) record(status int, took time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := &l.res
	r.Sent++
	if took > 0 {
		r.lat = append(r.lat, took)
	}
	switch {
	case err != nil:
		r.Failed++
		kind := errorKind(err)
		if r.ByError[kind] == 0 {
			r.First[kind] = err.Error()
		}
		r.ByError[kind]++
	case l.ok(status):
		r.OK++
	default:
		r.Failed++
		r.ByStatus[status]++
	}
}

// Snapshot returns the counts so far, without stopping.
func (l *Load) Snapshot() (sent, failed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.res.Sent, l.res.Failed
}

// Stop ends the load, waits for requests in flight, and returns the result.
func (l *Load) Stop() *Result {
	l.cancel()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	res := l.res
	res.lat = slices.Clone(l.res.lat)
	slices.Sort(res.lat)
	return &res
}

// errorKind names an error class for counting.
func errorKind(err error) string {
	var nerr net.Error
	switch {
	case errors.Is(err, errOverload):
		return "overload"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.As(err, &nerr) && nerr.Timeout():
		return "timeout"
	default:
		return "other"
	}
}

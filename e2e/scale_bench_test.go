package e2e

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/bulkhead-router/bulkhead/internal/controlplane"
	"github.com/bulkhead-router/bulkhead/internal/testrouter"
)

// BenchmarkRoutes1k and BenchmarkRoutes10k measure the route source at
// scale against a real kube-apiserver (run with `make bench-routes`):
//
//   - startup: process start to /readyz 200 with N Ingresses, each with its
//     own host, a Service and an EndpointSlice of 3 endpoints;
//   - the router's resident memory at that size;
//   - write-to-live latency measured from outside: each iteration creates an
//     Ingress for a new host whose Service has no endpoints and times the
//     API write until the proxy answers 503 for that host instead of 404;
//     the router's histogram of the same changes, and its CPU time per
//     change (less what it spends idle over as long);
//   - endpoint-only changes (200 EndpointSlices rewritten, one at a time)
//     from the router's own convergence histogram, the router's CPU time
//     per change, and how many route tables skipper got for them (0 since
//     endpoints live beside the routes), and the mean rebuild time.
//
// BULKHEAD_BINARY runs another build (make bench-routes runs the build
// before issue 13 and this one, in one run).
//
// The endpoints are TEST-NET addresses (192.0.2.0/24, 198.51.100.0/24,
// 203.0.113.0/24) and no request is ever sent to them.
func BenchmarkRoutes1k(b *testing.B)  { benchmarkRoutes(b, 1000) }
func BenchmarkRoutes10k(b *testing.B) { benchmarkRoutes(b, 10000) }

func benchmarkRoutes(b *testing.B, n int) {
	cp := controlplane.ForTest(b)
	client := cp.Client()
	ctx := context.Background()
	ensureNamespace(b, client, "scale")
	must(b)(client.NetworkingV1().IngressClasses().Create(ctx, &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: "bulkhead"}, Spec: networkingv1.IngressClassSpec{Controller: controllerName}}, metav1.CreateOptions{}))
	must(b)(client.CoreV1().Services("scale").Create(ctx, scaleService("empty"), metav1.CreateOptions{}))

	start := time.Now()
	parallel(b, n, func(i int) error {
		name := fmt.Sprintf("app-%05d", i)
		if _, err := client.CoreV1().Services("scale").Create(ctx, scaleService(name), metav1.CreateOptions{}); err != nil {
			return err
		}
		if _, err := client.DiscoveryV1().EndpointSlices("scale").Create(ctx, scaleSlice(name, i, 0), metav1.CreateOptions{}); err != nil {
			return err
		}
		_, err := client.NetworkingV1().Ingresses("scale").Create(ctx, scaleIngress(name, name+".example", name), metav1.CreateOptions{})
		return err
	})
	b.Logf("created %d Ingresses, Services and EndpointSlices in %s", n, time.Since(start).Round(time.Millisecond))

	// Build before the clock starts, and start the router as a node starts
	// it from a pulled image: with none of its binary in the page cache. A
	// binary just built is all there, and the kernel then maps far more of
	// it into the process at each fault (58.7 against 44.3 MiB of the
	// binary resident at 1,000 Ingresses, the same build), which made the
	// build before look 15 MiB smaller only for being built earlier.
	evictFromPageCache(b, testrouter.Binary(b))
	launched := time.Now()
	args := []string{"-log-level", cmp.Or(os.Getenv("BULKHEAD_BENCH_LOG"), "info")}
	// BULKHEAD_BENCH_ARGS: more flags for the router, to compare settings
	// (e.g. "-route-shards 128") on the same objects.
	args = append(args, strings.Fields(os.Getenv("BULKHEAD_BENCH_ARGS"))...)
	router := testrouter.Start(b, testrouter.Options{Kubeconfig: cp.Kubeconfig(), Args: args})
	router.WaitReady(5 * time.Minute)
	ready := time.Since(launched)
	routes, _ := router.Metric("bulkhead_routes")
	if int(routes) < n {
		b.Fatalf("ready with %v routes, want at least %d", routes, n)
	}
	profile := os.Getenv("BULKHEAD_BENCH_PROFILE") // a directory: heap and CPU profiles of the router
	saveProfile := func(name, path string) {
		if profile == "" {
			return
		}
		// Not router.Admin: this may run on another goroutine, and a
		// profile that fails is no reason to fail the benchmark.
		resp, err := http.Get(router.AdminURL + path)
		if err != nil {
			b.Logf("profile %s: %v", name, err)
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode == http.StatusOK {
			os.WriteFile(profile+"/"+name, data, 0o644)
		}
	}
	saveProfile(fmt.Sprintf("heap-%d.pprof", n), "/debug/pprof/heap?gc=1")
	rebuildSum, _ := router.Metric("bulkhead_rebuild_duration_seconds_sum")
	rebuildCount, _ := router.Metric("bulkhead_rebuild_duration_seconds_count")

	// The router's CPU time while idle, to subtract from what the changes
	// below cost it.
	idleStart, idleCPU := time.Now(), cpuSeconds(b, router.Pid())
	<-time.After(2 * time.Second) // an idle baseline, not a wait for a condition
	idleRate := (cpuSeconds(b, router.Pid()) - idleCPU) / time.Since(idleStart).Seconds()

	profiled := make(chan struct{})
	go func() {
		defer close(profiled)
		saveProfile(fmt.Sprintf("cpu-ingress-%d.pprof", n), "/debug/pprof/profile?seconds=8")
	}()
	if profile == "" {
		<-profiled
	}
	// Write-to-live, from outside.
	// The probe asks once a millisecond: asking in a tight loop would
	// take a core of the two from the router it measures. The router's
	// own convergence histogram gives the time from the watch event to the
	// table live in skipper, without the API server's part.
	probe := &http.Client{Transport: &http.Transport{Proxy: nil}}
	var latencies []time.Duration
	ingressBefore := histogram(b, router, "bulkhead_convergence_latency_seconds")
	ingressStart, ingressCPU := time.Now(), cpuSeconds(b, router.Pid())
	ingressChanges := 0
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		ingressChanges++
		host := fmt.Sprintf("probe-%d.example", i)
		t0 := time.Now()
		must(b)(client.NetworkingV1().Ingresses("scale").Create(ctx, scaleIngress(fmt.Sprintf("probe-%d", i), host, "empty"), metav1.CreateOptions{}))
		for statusOf(b, probe, router.ProxyURL, host) != http.StatusServiceUnavailable {
			if time.Since(t0) > 30*time.Second {
				b.Fatalf("probe %s never went live", host)
			}
			<-time.After(time.Millisecond) // the probe's pace (see above)
		}
		latencies = append(latencies, time.Since(t0))
	}
	b.StopTimer()
	// Less the idle rate; the probe's requests (one a millisecond) are in
	// it, as they would be in any router serving traffic.
	cpuPerIngress := (cpuSeconds(b, router.Pid()) - ingressCPU - idleRate*time.Since(ingressStart).Seconds()) / float64(ingressChanges)
	ingressConvergence := histogram(b, router, "bulkhead_convergence_latency_seconds").sub(ingressBefore)

	// Endpoint-only changes, from the router's convergence histogram
	// (each change's slice carries its write time as the
	// last-change-trigger-time), with the router's CPU time per change
	// (less what it spends idle over as long) and the route tables skipper
	// got meanwhile (none: endpoints live beside the routes).
	// 200: the p99 of 100 is the slowest change but one.
	const endpointChanges = 200
	before := histogram(b, router, "bulkhead_convergence_latency_seconds")
	routeUpdates, counted := router.Metric("bulkhead_route_updates_total")
	<-profiled
	// Awaited before the benchmark returns: the router is stopped then,
	// and a profile still being taken would find nobody to answer it.
	endpointsProfiled := make(chan struct{})
	go func() {
		defer close(endpointsProfiled)
		saveProfile(fmt.Sprintf("cpu-endpoints-%d.pprof", n), "/debug/pprof/profile?seconds=5")
	}()
	saveProfile(fmt.Sprintf("heap-before-endpoints-%d.pprof", n), "/debug/pprof/heap") // -base for the one after: what the changes allocate
	changeStart, changeCPU := time.Now(), cpuSeconds(b, router.Pid())
	for i := range endpointChanges {
		s, err := client.DiscoveryV1().EndpointSlices("scale").Get(ctx, fmt.Sprintf("app-%05d", i%n), metav1.GetOptions{})
		if err != nil {
			b.Fatal(err)
		}
		fresh := scaleSlice(s.Labels[discoveryv1.LabelServiceName], i%n, 1+i/n)
		fresh.ResourceVersion = s.ResourceVersion
		must(b)(client.DiscoveryV1().EndpointSlices("scale").Update(ctx, fresh, metav1.UpdateOptions{}))
		// The first look at the histogram after most changes are live
		// (p50 ≤ 2.5 ms): a scrape of /metrics costs the router a few
		// milliseconds of CPU, and one at once raced the change it was
		// waiting for on the two cores the router shares with the API
		// server and etcd. Prometheus scrapes every 15 s or so, not
		// during every change.
		<-time.After(10 * time.Millisecond) // the observer's pace, not a wait for a condition
		router.WaitFor(30*time.Second, "endpoint change observed", func() bool {
			return histogram(b, router, "bulkhead_convergence_latency_seconds").count > before.count+float64(i)
		})
	}
	changeWall := time.Since(changeStart).Seconds()
	cpuPerChange := (cpuSeconds(b, router.Pid()) - changeCPU - idleRate*changeWall) / endpointChanges
	after := histogram(b, router, "bulkhead_convergence_latency_seconds")
	routeUpdatesAfter, _ := router.Metric("bulkhead_route_updates_total")
	saveProfile(fmt.Sprintf("heap-after-endpoints-%d.pprof", n), "/debug/pprof/heap")
	<-endpointsProfiled

	slices.Sort(latencies)
	if os.Getenv("BULKHEAD_BENCH_LOG") != "" {
		os.WriteFile(os.Getenv("BULKHEAD_BENCH_LOG_FILE"), []byte(router.Log()), 0o644)
	}
	b.ReportMetric(ready.Seconds(), "s-to-ready")
	rss := rssOf(b, router.Pid())
	b.ReportMetric(float64(rss["VmRSS"])/(1<<20), "MiB-rss")
	// Of which the binary's pages (file-backed; about 40 MiB of a
	// 110 MB binary) and the rest (the Go heap and runtime).
	b.ReportMetric(float64(rss["RssFile"])/(1<<20), "MiB-rss-file")
	// And where the rest goes, as the runtime counts it at that moment:
	// spans in use (live objects, garbage not yet collected and the free
	// room in those spans), free spans not yet returned to the system, and
	// the heap size the next collection starts at.
	for _, m := range []struct{ sample, unit string }{
		{"go_memstats_heap_alloc_bytes", "MiB-heap-alloc"},
		{"go_memstats_heap_inuse_bytes", "MiB-heap-inuse"},
		{"go_memstats_heap_idle_bytes", "MiB-heap-idle"},
		{"go_memstats_heap_released_bytes", "MiB-heap-released"},
		{"go_memstats_next_gc_bytes", "MiB-next-gc"},
	} {
		if v, ok := router.Metric(m.sample); ok {
			b.ReportMetric(v/(1<<20), m.unit)
		}
	}
	saveProfile(fmt.Sprintf("memstats-%d.txt", n), "/debug/pprof/heap?debug=1") // the runtime's figures at that moment
	if profile != "" {
		smaps, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", router.Pid())) // which mappings are resident
		os.WriteFile(fmt.Sprintf("%s/smaps-%d.txt", profile, n), smaps, 0o644)
	}
	// After the RSS: reading the live heap collects garbage first.
	if live, ok := liveHeap(router.AdminURL); ok {
		b.ReportMetric(float64(live)/(1<<20), "MiB-live-heap")
	}
	if rebuildCount > 0 {
		b.ReportMetric(rebuildSum/rebuildCount*1000, "ms/rebuild")
	}
	b.ReportMetric(float64(pct(latencies, 50).Microseconds())/1000, "ms-write-to-live-p50")
	b.ReportMetric(float64(pct(latencies, 99).Microseconds())/1000, "ms-write-to-live-p99")
	b.ReportMetric(ingressConvergence.quantileUpperBound(0.50)*1000, "ms-ingress-change-p50-bucket")
	b.ReportMetric(ingressConvergence.quantileUpperBound(0.99)*1000, "ms-ingress-change-p99-bucket")
	b.ReportMetric(after.sub(before).quantileUpperBound(0.50)*1000, "ms-endpoint-change-p50-bucket")
	b.ReportMetric(after.sub(before).quantileUpperBound(0.99)*1000, "ms-endpoint-change-p99-bucket")
	b.ReportMetric(cpuPerChange*1000, "ms-cpu/endpoint-change")
	b.ReportMetric(cpuPerIngress*1000, "ms-cpu/ingress-change")
	if counted { // builds before the endpoint split do not count them
		b.ReportMetric(routeUpdatesAfter-routeUpdates, "route-tables-for-endpoint-changes")
	}
}

// evictFromPageCache drops the file's clean pages from the page cache
// (posix_fadvise POSIX_FADV_DONTNEED on all of it).
func evictFromPageCache(b testing.TB, path string) {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	const fadvDontNeed = 4
	if _, _, errno := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvDontNeed, 0, 0); errno != 0 {
		b.Fatalf("fadvise %s: %v", path, errno)
	}
}

// cpuSeconds is the user and system CPU time the process has used.
func cpuSeconds(b testing.TB, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces, in parentheses).
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	const ticks = 100 // USER_HZ on Linux
	return (utime + stime) / ticks
}

func scaleService(name string) *corev1.Service {
	// Headless: the router never reads a cluster IP, and allocating
	// 10,000 of them (an IPAddress object each) was most of the set-up's
	// 20 minutes.
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "scale", Name: name},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}}}
}

// scaleSlice has 3 TEST-NET endpoints; generation varies the addresses.
func scaleSlice(service string, i, generation int) *discoveryv1.EndpointSlice {
	port, name, ready := int32(8080), "http", true
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "scale", Name: service,
			Labels:      map[string]string{discoveryv1.LabelServiceName: service},
			Annotations: map[string]string{corev1.EndpointsLastChangeTriggerTime: time.Now().Format(time.RFC3339Nano)}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
	}
	for j, net := range []string{"192.0.2", "198.51.100", "203.0.113"} {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("%s.%d", net, (i+j+generation)%250+1)},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		})
	}
	return s
}

func scaleIngress(name, host, service string) *networkingv1.Ingress {
	return ingress("scale", name, "bulkhead", rule(host, path("/", prefix(), service)))
}

// must returns a function that fails b on a non-nil error, for calls
// returning (object, error).
func must(b testing.TB) func(any, error) {
	return func(_ any, err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
	}
}

// parallel runs f(0..n-1) on 8 workers and fails on the first error.
func parallel(b testing.TB, n int, f func(i int) error) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

func statusOf(b testing.TB, c *http.Client, base, host string) int {
	req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, len(d)*p/100)]
}

// rssOf reads the resident memory figures of /proc/PID/status (VmRSS,
// RssAnon, RssFile, RssShmem), in bytes.
func rssOf(b testing.TB, pid int) map[string]int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, _ := strings.Cut(sc.Text(), ":")
		if name == "VmRSS" || strings.HasPrefix(name, "Rss") {
			kb, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			out[name] = kb * 1024
		}
	}
	return out
}

// liveHeap is the router's heap in use after a collection (HeapAlloc of
// the heap profile's text form, which collects first); false from a
// router that does not answer it.
func liveHeap(adminURL string) (int64, bool) {
	resp, err := http.Get(adminURL + "/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapAlloc = "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// hist is a Prometheus histogram read from the admin endpoint.
type hist struct {
	bounds []float64
	counts []float64 // cumulative, per bound
	count  float64
}

func histogram(b testing.TB, r *testrouter.Router, name string) hist {
	_, body := r.Admin("/metrics")
	var h hist
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, name+`_bucket{le="`); ok {
			le, val, _ := strings.Cut(rest, `"} `)
			bound, err := strconv.ParseFloat(le, 64)
			if le == "+Inf" {
				bound, err = 1e9, nil
			}
			v, err2 := strconv.ParseFloat(strings.Fields(val)[0], 64)
			if err == nil && err2 == nil {
				h.bounds, h.counts = append(h.bounds, bound), append(h.counts, v)
			}
		}
		if rest, ok := strings.CutPrefix(line, name+"_count "); ok {
			h.count, _ = strconv.ParseFloat(strings.Fields(rest)[0], 64)
		}
	}
	return h
}

func (h hist) sub(o hist) hist {
	d := hist{bounds: h.bounds, count: h.count - o.count}
	for i := range h.counts {
		var prev float64
		if i < len(o.counts) {
			prev = o.counts[i]
		}
		d.counts = append(d.counts, h.counts[i]-prev)
	}
	return d
}

// quantileUpperBound is the smallest bucket bound holding quantile q.
func (h hist) quantileUpperBound(q float64) float64 {
	for i, c := range h.counts {
		if h.count > 0 && c/h.count >= q {
			return h.bounds[i]
		}
	}
	return -1
}

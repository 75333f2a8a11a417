package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/bulkhead-router/bulkhead/internal/controlplane"
	"github.com/bulkhead-router/bulkhead/internal/freeport"
	"github.com/bulkhead-router/bulkhead/internal/testpods"
)

const (
	namespace  = "fleet"
	controller = "bulkhead.io/ingress-controller"
)

type config struct {
	routers, objects int
	outage, spread   time.Duration
	observe          time.Duration
	rate             float64
	modes            []string
	faults           []string
	work             string
}

func main() {
	var c config
	modes := flag.String("modes", "restart,resume", "reconnect modes to measure, in order (-apiserver-reconnect of each fleet)")
	faults := flag.String("faults", "kill,freeze", "faults to measure, in order: kill (SIGKILL, start again: the new server has no watch history) and freeze (SIGSTOP, SIGCONT: the server keeps it, as in a network partition)")
	flag.IntVar(&c.routers, "routers", 50, "bulkhead processes in the fleet")
	flag.IntVar(&c.objects, "objects", 2000, "Ingresses, Services and EndpointSlices each")
	flag.DurationVar(&c.outage, "outage", 12*time.Second, "how long kube-apiserver stays down")
	flag.DurationVar(&c.spread, "spread", 5*time.Second, "-apiserver-relist-spread of the routers (resume mode)")
	flag.DurationVar(&c.observe, "observe", 25*time.Second, "how long after the restart lists are counted and latency measured (at least until every router converged)")
	flag.Float64Var(&c.rate, "rate", 2, "requests per second to each router throughout")
	flag.StringVar(&c.work, "work", "", "working directory (default: a new temporary one, removed at the end)")
	flag.Parse()
	c.modes = strings.Split(*modes, ",")
	c.faults = strings.Split(*faults, ",")
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "benchfleet:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	ctx := context.Background()
	if err := testpods.CheckPreconditions(testpods.Options{}); err != nil {
		return err
	}
	work := c.work
	if work == "" {
		dir, err := os.MkdirTemp("", "benchfleet-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		work = dir
	}
	bin := filepath.Join(work, "bulkhead")
	logf("building bulkhead")
	build := exec.Command("go", "build", "-o", bin, "./cmd/bulkhead")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	cp, err := controlplane.Start(ctx, controlplane.Options{Dir: filepath.Join(work, "controlplane"), Progress: os.Stderr, Audit: true})
	if err != nil {
		return err
	}
	defer cp.Stop()
	cfg := cp.RESTConfig()
	cfg.UserAgent = "benchfleet"
	client := kubernetes.NewForConfigOrDie(cfg)
	pods, err := testpods.New(ctx, client, testpods.Options{})
	if err != nil {
		return err
	}
	defer pods.Close()
	if err := populate(ctx, client, pods, c.objects); err != nil {
		return err
	}
	var results []*result
	for _, fault := range c.faults {
		for _, mode := range c.modes {
			r, err := measure(ctx, c, cp, client, bin, work, mode, fault)
			if err != nil {
				return fmt.Errorf("%s, %s: %w", mode, fault, err)
			}
			results = append(results, r)
		}
	}
	report(os.Stdout, c, results)
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// populate writes the IngressClass, the objects, and web.fleet's pod.
func populate(ctx context.Context, client kubernetes.Interface, pods *testpods.Cluster, n int) error {
	start := time.Now()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if _, err := client.NetworkingV1().IngressClasses().Create(ctx, &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: "bulkhead"}, Spec: networkingv1.IngressClassSpec{Controller: controller}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := pods.StartPod(ctx, testpods.PodSpec{Namespace: namespace, Service: "web", Name: "web-0"}); err != nil {
		return err
	}
	if _, err := client.NetworkingV1().Ingresses(namespace).Create(ctx, ingress("web", "web.fleet", "web"), metav1.CreateOptions{}); err != nil {
		return err
	}
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := createApp(ctx, client, i); err != nil {
					mu.Lock()
					firstErr = cmp.Or(firstErr, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	logf("created %d Ingresses, Services and EndpointSlices in %s", n, time.Since(start).Round(time.Millisecond))
	return nil
}

func createApp(ctx context.Context, client kubernetes.Interface, i int) error {
	name := fmt.Sprintf("app-%05d", i)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}, Spec: corev1.ServiceSpec{
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
	if _, err := client.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	// TEST-NET-3 addresses: routes exist, nothing is ever sent there.
	var eps []discoveryv1.Endpoint
	for j := range 3 {
		eps = append(eps, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("203.0.%d.%d", 113, (i*3+j)%250+1)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)},
		})
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}},
	}
	if _, err := client.DiscoveryV1().EndpointSlices(namespace).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err := client.NetworkingV1().Ingresses(namespace).Create(ctx, ingress(name, name+".fleet", name), metav1.CreateOptions{})
	return err
}

func ingress(name, host, service string) *networkingv1.Ingress {
	port := networkingv1.ServiceBackendPort{Number: 80}
	if service == "web" {
		port = networkingv1.ServiceBackendPort{Number: testpods.ServicePort}
	}
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: networkingv1.IngressSpec{IngressClassName: ptr("bulkhead"), Rules: []networkingv1.IngressRule{{
			Host: host,
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: "/", PathType: ptr(networkingv1.PathTypePrefix),
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: service, Port: port}},
			}}}},
		}}},
	}
}

func ptr[T any](v T) *T { return &v }

// router is one bulkhead process.
type router struct {
	cmd       *exec.Cmd
	proxy     string
	health    string
	converged atomic.Int64 // ns after the marker's write; 0 until then
}

func startRouter(bin, dir, kubeconfig, mode string, spread time.Duration) (*router, error) {
	ports, err := freeport.Get(4)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	logFile, err := os.Create(filepath.Join(dir, "bulkhead.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin,
		"-kubeconfig", kubeconfig, "-address", addr(0), "-health-address", addr(1), "-admin-address", addr(2),
		"-metrics-address", addr(3), "-state-dir", dir, "-log-level", "warn", "-drain-delay", "0s",
		"-apiserver-reconnect", mode, "-apiserver-relist-spread", spread.String())
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// A smaller heap target: 50 routers share two cores and their memory.
	cmd.Env = append(os.Environ(), "GOGC=50")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { cmd.Wait(); logFile.Close() }()
	return &router{cmd: cmd, proxy: "http://" + addr(0), health: "http://" + addr(1)}, nil
}

var web = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2}}

func get(url, host string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Host = host
	resp, err := web.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func await(timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond) // polling other processes: nothing to wait on
	}
	return nil
}

type result struct {
	mode, fault         string
	routers             int
	startToReady        time.Duration
	peakRSS             int64 // kube-apiserver VmHWM after the restart, bytes
	lists, streamed     int
	resumes             int
	byResource          map[string]int
	first, p50, last    time.Duration // of the full lists, after the server was ready
	probeN, probeErrors int
	probeP50, probeP99  time.Duration
	probeMax            time.Duration
	convergedP50        time.Duration
	convergedMax        time.Duration
	sent, failed        int64
	failures            map[string]int
}

func measure(ctx context.Context, c config, cp *controlplane.ControlPlane, client kubernetes.Interface, bin, work, mode, fault string) (*result, error) {
	res := &result{mode: mode, fault: fault, routers: c.routers, byResource: map[string]int{}, failures: map[string]int{}}
	logf("%s: starting %d routers", mode, c.routers)
	var fleet []*router
	defer func() {
		for _, r := range fleet {
			r.cmd.Process.Kill()
		}
	}()
	for i := range c.routers {
		r, err := startRouter(bin, filepath.Join(work, fault+"-"+mode, fmt.Sprintf("router-%03d", i)), cp.Kubeconfig(), mode, c.spread)
		if err != nil {
			return nil, err
		}
		fleet = append(fleet, r)
		// Start them a few at a time: 50 initial syncs at once on two
		// cores would measure the machine, not the routers.
		if i%5 == 4 {
			if err := await(2*time.Minute, "routers serving", func() bool { code, _ := get(r.proxy+"/", "web.fleet"); return code == 200 }); err != nil {
				return nil, err
			}
		}
	}
	for i, r := range fleet {
		if err := await(2*time.Minute, fmt.Sprintf("router %d serving web.fleet", i), func() bool { code, _ := get(r.proxy+"/", "web.fleet"); return code == 200 }); err != nil {
			return nil, err
		}
	}
	logf("%s, %s: every router serves; load on, then the fault", mode, fault)

	// The load: -rate per router, every answer counted.
	stopLoad := make(chan struct{})
	var loadWG sync.WaitGroup
	var mu sync.Mutex
	var sent, failed atomic.Int64
	for _, r := range fleet {
		loadWG.Go(func() {
			tick := time.NewTicker(time.Duration(float64(time.Second) / c.rate))
			defer tick.Stop()
			for {
				select {
				case <-stopLoad:
					return
				case <-tick.C:
				}
				sent.Add(1)
				code, err := get(r.proxy+"/", "web.fleet")
				if err != nil || code != 200 {
					failed.Add(1)
					mu.Lock()
					res.failures[cmp.Or(fmt.Sprint(err), strconv.Itoa(code))]++
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(3 * time.Second) // steady load before the fault

	var mark int64
	var ready time.Time
	pid := cp.APIServerPID()
	switch fault {
	case "kill":
		if err := cp.KillAPIServer(); err != nil {
			return nil, err
		}
		time.Sleep(c.outage) // the outage itself
		mark = cp.AuditLogSize()
		started := time.Now()
		if err := cp.StartAPIServer(ctx); err != nil {
			return nil, err
		}
		ready = time.Now()
		res.startToReady = ready.Sub(started)
		pid = cp.APIServerPID()
	case "freeze":
		if err := cp.FreezeAPIServer(); err != nil {
			return nil, err
		}
		time.Sleep(c.outage) // the outage itself
		mark = cp.AuditLogSize()
		// Peak memory from here on: 5 resets the process's VmHWM.
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0o200); err != nil {
			return nil, err
		}
		if err := cp.ThawAPIServer(); err != nil {
			return nil, err
		}
		ready = time.Now()
	default:
		return nil, fmt.Errorf("unknown fault %q (kill, freeze)", fault)
	}
	logf("%s, %s: kube-apiserver back (start to ready %s)", mode, fault, res.startToReady.Round(time.Millisecond))

	// The outside client: GET one namespace every 100 ms.
	stopProbe := make(chan struct{})
	var probeWG sync.WaitGroup
	var lat []time.Duration
	probeWG.Go(func() {
		cfg := cp.RESTConfig()
		cfg.UserAgent = "benchfleet-probe"
		cfg.Timeout = 10 * time.Second
		probe := kubernetes.NewForConfigOrDie(cfg)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopProbe:
				return
			case <-tick.C:
			}
			t0 := time.Now()
			_, err := probe.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
			res.probeN++
			if err != nil {
				res.probeErrors++
				continue
			}
			lat = append(lat, time.Since(t0))
		}
	})

	// The marker, written at once; every router polled until it serves it.
	marker := "marker-" + fault + "-" + mode
	var written time.Time
	if err := await(30*time.Second, "the marker written", func() bool {
		_, err := client.NetworkingV1().Ingresses(namespace).Create(ctx, ingress(marker, marker+".fleet", "web"), metav1.CreateOptions{})
		written = time.Now()
		return err == nil || apierrors.IsAlreadyExists(err)
	}); err != nil {
		return nil, err
	}
	var convWG sync.WaitGroup
	for _, r := range fleet {
		convWG.Go(func() {
			for time.Since(written) < 2*time.Minute {
				if code, _ := get(r.proxy+"/", marker+".fleet"); code == 200 {
					r.converged.Store(int64(time.Since(written)))
					return
				}
				time.Sleep(250 * time.Millisecond)
			}
		})
	}
	convWG.Wait()
	var conv []time.Duration
	for _, r := range fleet {
		if d := time.Duration(r.converged.Load()); d > 0 {
			conv = append(conv, d)
		}
	}
	if len(conv) < len(fleet) {
		return nil, fmt.Errorf("%d of %d routers never served the marker", len(fleet)-len(conv), len(fleet))
	}
	slices.Sort(conv)
	res.convergedP50, res.convergedMax = conv[len(conv)/2], conv[len(conv)-1]
	if rest := c.observe - time.Since(ready); rest > 0 {
		time.Sleep(rest) // late relists still count
	}
	res.peakRSS = vmHWM(pid)
	close(stopProbe)
	probeWG.Wait()
	close(stopLoad)
	loadWG.Wait()
	res.sent, res.failed = sent.Load(), failed.Load()

	events, _, err := cp.AuditEvents(mark)
	if err != nil {
		return nil, err
	}
	var at []time.Duration
	for _, ev := range events {
		if !strings.HasPrefix(ev.UserAgent, "bulkhead") {
			continue
		}
		switch {
		case ev.FullList():
			res.lists++
			res.byResource[ev.Resource]++
			if ev.StreamingList() {
				res.streamed++
			}
			at = append(at, ev.Received.Sub(ready))
		case ev.Verb == "watch":
			res.resumes++
		}
	}
	if len(at) > 0 {
		slices.Sort(at)
		res.first, res.p50, res.last = at[0], at[len(at)/2], at[len(at)-1]
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		res.probeP50, res.probeP99, res.probeMax = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	}
	if err := client.NetworkingV1().Ingresses(namespace).Delete(ctx, marker, metav1.DeleteOptions{}); err != nil {
		return nil, err
	}
	logf("%s: done", mode)
	return res, nil
}

// vmHWM is a process's peak resident memory.
func vmHWM(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func report(w io.Writer, c config, rs []*result) {
	fmt.Fprintf(w, "\n%d bulkhead routers, %d Ingresses, Services and EndpointSlices each; kube-apiserver SIGKILLed (kill) or SIGSTOPped (freeze) for %s, then started again or SIGCONTed; relist spread %s; load %.0f req/s per router\n\n",
		c.routers, c.objects, c.outage, c.spread, c.rate)
	row := func(name string, f func(*result) string) {
		fmt.Fprintf(w, "| %s |", name)
		for _, r := range rs {
			fmt.Fprintf(w, " %s |", f(r))
		}
		fmt.Fprintln(w)
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }
	fmt.Fprint(w, "| after the API server's return |")
	for _, r := range rs {
		fmt.Fprintf(w, " %s, %s |", r.fault, r.mode)
	}
	fmt.Fprint(w, "\n| --- |")
	for range rs {
		fmt.Fprint(w, " --- |")
	}
	fmt.Fprintln(w)
	row("kube-apiserver start to ready", func(r *result) string {
		if r.fault != "kill" {
			return "-"
		}
		return ms(r.startToReady)
	})
	row("kube-apiserver peak RSS after its return", func(r *result) string { return fmt.Sprintf("%d MiB", r.peakRSS>>20) })
	row("full lists by the routers (streamed)", func(r *result) string { return fmt.Sprintf("%d (%d)", r.lists, r.streamed) })
	row("  per resource", func(r *result) string {
		var parts []string
		for _, k := range []string{"ingressclasses", "ingresses", "services", "endpointslices"} {
			parts = append(parts, fmt.Sprintf("%s %d", k, r.byResource[k]))
		}
		return strings.Join(parts, ", ")
	})
	row("full lists first / p50 / last (after its return)", func(r *result) string {
		if r.lists == 0 {
			return "-"
		}
		return fmt.Sprintf("%s / %s / %s", ms(r.first), ms(r.p50), ms(r.last))
	})
	row("watches resumed (no list)", func(r *result) string { return strconv.Itoa(r.resumes) })
	row("outside GET of a namespace, p50 / p99 / max", func(r *result) string {
		return fmt.Sprintf("%d / %d / %d ms (%d errors of %d)", r.probeP50.Milliseconds(), r.probeP99.Milliseconds(), r.probeMax.Milliseconds(), r.probeErrors, r.probeN)
	})
	row("marker Ingress served, p50 / every router", func(r *result) string { return ms(r.convergedP50) + " / " + ms(r.convergedMax) })
	row("load: non-200 of requests", func(r *result) string {
		s := fmt.Sprintf("%d of %d", r.failed, r.sent)
		if len(r.failures) > 0 {
			s += fmt.Sprintf(" %v", r.failures)
		}
		return s
	})
}

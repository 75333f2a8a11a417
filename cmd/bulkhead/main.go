package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/zalando/skipper/filters"
	"github.com/zalando/skipper/predicates/query"
	"github.com/zalando/skipper/predicates/traffic"
	skrouting "github.com/zalando/skipper/routing"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/bulkhead-router/bulkhead/admin"
	"github.com/bulkhead-router/bulkhead/dataclient"
	"github.com/bulkhead-router/bulkhead/gatewaystatus"
	"github.com/bulkhead-router/bulkhead/health"
	"github.com/bulkhead-router/bulkhead/ingressstatus"
	"github.com/bulkhead-router/bulkhead/internal/logging"
	"github.com/bulkhead-router/bulkhead/nodewatch"
	"github.com/bulkhead-router/bulkhead/proxy"
	"github.com/bulkhead-router/bulkhead/routing"
	"github.com/bulkhead-router/bulkhead/tablestore"
	"github.com/bulkhead-router/bulkhead/tlsterm"
	"github.com/bulkhead-router/bulkhead/upstream"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main with its inputs explicit, so tests can drive it.
func run(args []string, stdout, stderr io.Writer) int {
	// "bulkhead explain|routes|status ...": ask a running router (subcommands.go).
	if code, ok := runSubcommand(args, stdout, stderr); ok {
		return code
	}
	cfg, err := parseConfig(args, stdout)
	if errors.Is(err, errHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "bulkhead: %v (see -help)\n", err)
		return 2
	}
	log, err := logging.New(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		fmt.Fprintf(stderr, "bulkhead: %v\n", err)
		return 2
	}

	// The first SIGTERM or SIGINT starts a graceful shutdown; a second one
	// ends the process at once, for an operator who does not want to wait.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-signals
		log.Info("signal received: shutting down gracefully; send it again to stop at once", "signal", sig.String())
		cancel()
		sig = <-signals
		log.Warn("second signal received: stopping now", "signal", sig.String())
		os.Exit(1)
	}()

	detectDeadConnections()
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("bulkhead stopped", logging.KeyError, err)
		return 1
	}
	log.Info("bulkhead stopped")
	return 0
}

// serve runs the router until stop ends, then drains and shuts down. The
// route source and the other background work run on until the drain is
// over: routes must stay current while traffic is still served.
func serve(stop context.Context, cfg config, log *slog.Logger) error {
	started := time.Now()
	ctx, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(),
	)
	setMemoryLimit(log, "/sys/fs/cgroup/memory.max")
	ready := health.New(reg, map[string]string{health.ConditionRoutes: "no route table loaded yet"})
	// Bind every listener before anything else. The proxy socket is bound
	// now but served only once a route table is live (below): until then
	// the kernel queues connections in the listen backlog, so a client (or
	// an ALB that still counts this node healthy after a crash) is neither
	// refused nor answered from an empty table.
	listeners, err := listen(cfg)
	if err != nil {
		return err
	}
	gatewayListeners, err := listenGateway(cfg)
	if err != nil {
		for _, l := range listeners {
			l.Close()
		}
		return err
	}
	defer func() {
		for _, l := range listeners {
			l.Close() // Serve closes its listener; this covers the ones never served
		}
		for _, l := range gatewayListeners {
			l.Close()
		}
	}()

	restConfig, err := kubeConfig(cfg.Kubeconfig)
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	// The Node's addresses reach the data client (made below) through
	// nodeAddrs: endpoints at the node are refused.
	nodeAddrs := &addressRelay{}
	// The node: a node being drained takes the router out of the load
	// balancer before the instance goes away. What the API server cannot
	// tell (it is down) changes nothing.
	if cfg.WatchNode && cfg.NodeName == "" {
		log.Warn("no node name (-node-name or $NODE_NAME): node drains are not followed; readiness fails only on SIGTERM")
	} else if cfg.WatchNode {
		nodes, err := nodewatch.New(kube, cfg.NodeName, nodewatch.Options{
			Log:        log.With(logging.KeyComponent, "nodewatch"),
			Registerer: reg,
			OnChange: func(draining bool, reason string) {
				ready.Set(health.ConditionNode, !draining, reason)
			},
			OnAddresses: nodeAddrs.set,
		})
		if err != nil {
			return fmt.Errorf("node watch: %w", err)
		}
		go func() {
			if err := nodes.Run(ctx); err != nil {
				log.Error("node watch stopped", logging.KeyError, err)
			}
		}()
	}
	// The last-known-good table on local disk. A state directory that cannot
	// be used costs the restart-during-outage protection, not the router.
	var store dataclient.TableStore
	if ts, err := tablestore.Open(cfg.StateDir, tablestore.Options{Registerer: reg, Log: log.With(logging.KeyComponent, "tablestore")}); err != nil {
		log.Error("state directory unusable: running without a stored last-known-good table", logging.KeyError, err)
	} else {
		store = storeAdapter{ts}
		// At most every -state-write-interval under churn: at 10,000
		// routes a write costs tens of milliseconds of CPU, and a rollout
		// changes endpoints many times a second; large clusters may raise
		// it (what a restart during an outage serves is then that old).
		go ts.RunWriter(ctx, cfg.StateInterval)
	}
	var routes *dataclient.Client
	status := ingressstatus.New(ingressstatus.Options{
		Client:         kube,
		Addresses:      cfg.PublishAddress,
		LeaseNamespace: electionNamespace(cfg.ElectionNS),
		LeaseName:      cfg.ElectionID,
		Identity:       electionIdentity(),
		Ingresses:      func() []*networkingv1.Ingress { return routes.Ingresses() },
		Log:            log.With(logging.KeyComponent, "ingressstatus"),
		Registerer:     reg,
	})
	// TLS on the proxy listeners: certificates of HTTPS Gateway listeners,
	// Ingress spec.tls hosts and the default one, from the applied table
	// (live or stored).
	certificates := tlsterm.NewStore(reg, log.With(logging.KeyComponent, "tlsterm"))
	connections := tlsterm.ConnectionCounter(reg)
	// Gateway API status: written by the elected replica, from live
	// translations only (a stored table has none).
	var gatewayStatus func(routing.Table, bool)
	var gwStatus *gatewaystatus.Writer
	if cfg.GatewayAPI {
		gw, err := gatewayclient.NewForConfig(restConfig)
		if err != nil {
			return fmt.Errorf("Gateway API client: %w", err)
		}
		gwStatus = gatewaystatus.New(gatewaystatus.Options{
			Client: kube, Gateway: gw, ControllerName: cfg.GatewayController,
			LeaseNamespace: electionNamespace(cfg.ElectionNS), LeaseName: cfg.GatewayElectID, Identity: electionIdentity(),
			GatewayClasses: func() []*gatewayv1.GatewayClass { return routes.GatewayClasses() },
			Gateways:       func() []*gatewayv1.Gateway { return routes.Gateways() },
			HTTPRoutes:     func() []*gatewayv1.HTTPRoute { return routes.HTTPRoutes() },
			GRPCRoutes:     func() []*gatewayv1.GRPCRoute { return routes.GRPCRoutes() },
			Log:            log.With(logging.KeyComponent, "gatewaystatus"),
			Registerer:     reg,
		})
		gatewayStatus = gatewayStatusChanges(gwStatus.SetStatus)
	}
	// The upstream resilience layer: per-endpoint breakers and budgeted
	// retries on another endpoint, keyed by ip:port so they outlive tables.
	// Requests that no bulkhead backend chose an endpoint for are refused,
	// never sent where the client's Host header points (<dynamic>).
	// Metrics label backends by their key, namespace/service:port. It
	// holds the endpoints of every backend beside the route table; the
	// data client feeds it (Endpoints), so endpoint changes never rebuild
	// skipper's table.
	resilience, err := upstream.New(upstream.Config{RefuseUnrouted: true, RetryDeadline: cfg.RetryDeadline, TLS: cfg.BackendTLS.TLS, Defaults: upstream.Policy{
		ConnectTimeout: cfg.ConnectTimeout, ConnectTimeoutSet: true,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout, ResponseHeaderTimeoutSet: true,
		RequestTimeout: cfg.RequestTimeout, RequestTimeoutSet: true,
	}}, reg, log.With(logging.KeyComponent, "upstream"))
	if err != nil {
		return err
	}
	accessLog, err := startAccessLog(cfg.AccessLog, reg, log)
	if err != nil {
		return err
	}
	defer accessLog.close() // after the proxy servers have stopped: the lines of their last requests
	tracer, err := startTracing(cfg.Tracing, cfg.Edge.TrustedProxies, cfg.NodeName, reg, log)
	if err != nil {
		return err
	}
	defer tracer.close() // after the proxy servers have stopped: the spans of their last requests
	routes = dataclient.New(dataclient.Options{
		Connector:         dataclient.NewRESTConnector(restConfig, 0),
		DisableGatewayAPI: !cfg.GatewayAPI,
		Translate: routing.Options{ControllerName: cfg.ControllerName, SelfAddresses: localAddresses(log),
			GatewayControllerName: cfg.GatewayController, GatewayPorts: cfg.gatewayPorts(), PublishAddresses: cfg.PublishAddress,
			GatewayAddresses: cfg.GatewayAddresses, DefaultCertificate: cfg.DefaultCertificate},
		Store:       store,
		SyncTimeout: cfg.SyncTimeout,
		Reconnect:   cfg.Reconnect, RelistSpread: cfg.RelistSpread,
		Guard: dataclient.GuardOptions{MaxRemovalShare: cfg.GuardShare, MinObjects: cfg.GuardMin,
			Window: cfg.GuardWindow, HoldPeriod: cfg.GuardHold},
		Log:        log.With(logging.KeyComponent, "dataclient"),
		Registerer: reg,
		OnTable: tableWatchers(servedChanges(status.SetServed), gatewayStatus,
			func(t routing.Table, _ bool) { certificates.Set(t.Certificates) }, accessLog.tables()),
		Endpoints: resilience,
		Shards:    cfg.RouteShards,
	})
	nodeAddrs.connect(routes.SetNodeAddresses)
	// Gateway API routes: the listener port a request came in on,
	// weighted backendRefs and query parameter matches. (Also what
	// /explain makes the other candidates' predicates from.)
	predicates := []skrouting.PredicateSpec{routes.SentinelPredicate(), routing.NewGatewayPortSpec(), routing.NewPathRegexpSpec(), routing.NewListenerIsolationSpec(), traffic.NewSegment(), query.New()}
	px := proxy.New(proxy.Options{
		DataClients:      []skrouting.DataClient{routes},
		Shards:           cfg.RouteShards,
		ShardDataClients: func(i int) []skrouting.DataClient { return []skrouting.DataClient{routes.Shard(i)} },
		ShardOf:          func(r *http.Request) int { return routing.RequestShard(r, cfg.RouteShards) },
		PrepareRequest:   routing.PrepareRequest,
		Filters: []filters.Spec{routing.NewRestorePathSpec(), resilience.PolicySpec(), resilience.BackendSpec(), resilience.MirrorSpec(),
			routing.NewRequestHeadersSpec(), routing.NewResponseHeadersSpec(), routing.NewRedirectSpec(), routing.NewRewriteSpec(),
			routing.NewSSLRedirectSpec()},
		Predicates:         predicates,
		PostProcessors:     []skrouting.PostProcessor{resilience.PostProcessor(), routes.PostProcessor()},
		WrapRoundTripper:   resilience.WrapRoundTripper,
		BackendIdleTimeout: cfg.BackendIdleTimeout,
		Log:                log,
		ExpectedErrors:     []string{dataclient.NotSyncedMessage},
		// What the router believes of and accepts from clients.
		Trust:               proxy.ForwardedTrust{Proxies: cfg.Edge.TrustedProxies, Headers: cfg.Edge.TrustedHeaders},
		MaxHeaderFieldBytes: cfg.Edge.MaxHeaderFieldBytes,
		MaxHeaderCount:      cfg.Edge.MaxHeaderCount,
		BodyTimeout:         cfg.Edge.BodyTimeout,
		MaxBodyBytes:        cfg.Edge.MaxBodyBytes,
	})
	defer func() {
		routes.Close() // first: releases skipper's waiting LoadUpdate
		px.Close()
	}()
	go func() {
		if err := routes.Run(ctx); err != nil {
			log.Error("kubernetes route source stopped", logging.KeyError, err)
		}
	}()
	statusDone := make(chan struct{})
	go func() {
		defer close(statusDone)
		if err := status.Run(ctx); err != nil {
			log.Error("Ingress status writer stopped", logging.KeyError, err)
		}
	}()
	gatewayStatusDone := make(chan struct{})
	go func() {
		defer close(gatewayStatusDone)
		if gwStatus == nil {
			return
		}
		if err := gwStatus.Run(ctx); err != nil {
			log.Error("Gateway API status writer stopped", logging.KeyError, err)
		}
	}()

	// Bind every listener before serving any, so a port conflict is one
	// clear error at start rather than a half-running router.
	errorLog := slog.NewLogLogger(log.Handler(), slog.LevelDebug) // client-side noise (bad requests, resets) is not ours to shout about
	proxyHandler := resilience.Handler(px)
	proxyHandler = tracer.wrap(proxyHandler)    // nil when off: not in the chain
	proxyHandler = accessLog.wrap(proxyHandler) // outermost: its line covers all the router did
	h2Errors := http2ErrorCounter(reg)
	proxyServer := func(gatewayPort int32) *http.Server {
		srv := cfg.Edge.proxyServer(proxyHandler, errorLog, h2Errors) // HTTP/1.1 and HTTP/2 (edge.go)
		if gatewayPort != 0 {
			// Gateway routes match only requests that came in on their
			// listener's port (routing.WithGatewayPort); the port is the
			// listener's, never anything the client sent.
			srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
				if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
					if ip, ok := netip.AddrFromSlice(a.IP); ok {
						return routing.WithGatewayConn(ctx, gatewayPort, ip)
					}
				}
				return routing.WithGatewayPort(ctx, gatewayPort)
			}
		}
		return srv
	}
	servers := []*http.Server{
		proxyServer(cfg.proxyGatewayPort()),
		healthServer(ready, cfg.Edge.IdleTimeout, errorLog), // HTTP/1.1, h2c and gRPC health checks (listeners.go)
		adminServer(admin.Options{Gatherer: reg, Table: routes.Table, Source: routes,
			Endpoints: endpointView(routes, resilience), Token: cfg.AdminToken,
			Explain: explainOptions(cfg, px, predicates, resilience)}, errorLog),
		metricsServer(reg, errorLog),
	}
	serveErr := make(chan error, len(servers))
	startServing := func(i int) {
		go func() {
			if err := servers[i].Serve(listeners[i]); !errors.Is(err, http.ErrServerClosed) {
				serveErr <- err
			}
		}()
	}
	startServing(1) // health: /readyz says "no route table" until there is one
	startServing(2) // admin
	startServing(3) // metrics
	log.Info("bulkhead listening", "address", listeners[0].Addr().String(),
		"health_address", listeners[1].Addr().String(), "admin_address", listeners[2].Addr().String(),
		"admin_token", len(cfg.AdminToken) > 0, "metrics_address", listeners[3].Addr().String())

	// Every proxy listener takes TLS and plain HTTP alike (tlsterm):
	// HTTPS Gateway listeners and Ingress spec.tls are served as they
	// come, without a restart or a flag. The proxy listener serving no
	// Gateway port offers the Ingress and default certificates (port 0).
	listeners[0] = tlsterm.NewListener(listeners[0], certificates.Config(cfg.proxyGatewayPort()), cfg.Edge.HeaderTimeout, connections)
	for i, gl := range gatewayListeners {
		gatewayListeners[i].Listener = tlsterm.NewListener(gl.Listener, certificates.Config(gl.port), cfg.Edge.HeaderTimeout, connections)
	}
	var gatewayServers []*http.Server
	for _, gl := range gatewayListeners {
		srv := proxyServer(gl.port)
		gatewayServers = append(gatewayServers, srv)
		log.Info("Gateway listener port bound", "gateway_port", gl.port, "address", gl.Addr().String())
	}
	go func() {
		select {
		case <-px.FirstLoad():
			// skipper closes FirstLoad after it has installed the table, so
			// the first request served is matched against real routes.
			startServing(0)
			for i, srv := range gatewayServers {
				go func() {
					if err := srv.Serve(gatewayListeners[i]); !errors.Is(err, http.ErrServerClosed) {
						serveErr <- err
					}
				}()
			}
			ready.Set(health.ConditionRoutes, true, "")
			log.Info("route table loaded; serving traffic and ready", "since_start", time.Since(started).Round(time.Millisecond))
		case <-ctx.Done():
		}
	}()

	select {
	case <-stop.Done():
	case err := <-serveErr:
		return err
	}

	drain(append([]*http.Server{servers[0]}, gatewayServers...), ready, cfg, log)
	stopBackground()
	for _, s := range servers[1:] {
		s.Close()
	}
	// Let the status writer give up its lease, so another replica takes
	// over at once instead of after the lease expires.
	timeout := time.After(5 * time.Second)
	for _, done := range []chan struct{}{statusDone, gatewayStatusDone} {
		select {
		case <-done:
		case <-timeout:
		}
	}
	return nil
}

// listen binds the proxy, health, admin and metrics listeners, in that
// order.
func listen(cfg config) ([4]net.Listener, error) {
	var listeners [4]net.Listener
	for i, l := range []struct{ flag, addr string }{
		{"-address", cfg.Address}, {"-health-address", cfg.HealthAddress}, {"-admin-address", cfg.AdminAddress},
		{"-metrics-address", cfg.MetricsAddress},
	} {
		var err error
		if listeners[i], err = net.Listen("tcp", l.addr); err != nil {
			for _, open := range listeners[:i] {
				open.Close()
			}
			return listeners, fmt.Errorf("%s: %w", l.flag, err)
		}
	}
	return listeners, nil
}

// portListener is a Gateway listener port's own listener.
type portListener struct {
	net.Listener
	port int32
}

// listenGateway binds the Gateway listener ports that have an address of
// their own (the others are served on the proxy listener).
func listenGateway(cfg config) ([]portListener, error) {
	var out []portListener
	for _, gl := range cfg.GatewayListeners {
		if gl.Address == "" {
			continue
		}
		l, err := net.Listen("tcp", gl.Address)
		if err != nil {
			for _, open := range out {
				open.Close()
			}
			return nil, fmt.Errorf("-gateway-listeners: port %d: %w", gl.Port, err)
		}
		out = append(out, portListener{Listener: l, port: gl.Port})
	}
	return out, nil
}

// drain takes the router out of service without failing a request: it
// fails /readyz and keeps serving for the drain delay, while the load
// balancer notices and stops sending (nothing tells clients to leave
// meanwhile: the load balancer may still send on open connections until
// it has taken the target out); then it stops accepting connections,
// closes idle keep-alive connections, answers in-flight HTTP/1.1 requests
// with Connection: close, sends every HTTP/2 connection a GOAWAY (Go's
// server does all three once Shutdown starts: net/http's HTTP/2 server
// registers its graceful shutdown with Shutdown), lets the streams in
// flight finish, and waits up to the drain timeout for them. A stream a
// client opened after the GOAWAY's last stream id was never processed;
// the client retries it on a new connection (to another target).
func drain(proxyServers []*http.Server, ready *health.State, cfg config, log *slog.Logger) {
	start := time.Now()
	ready.Set(health.ConditionDraining, false, "shutting down")
	log.Info("draining: /readyz fails now, traffic is still served until the load balancer stops sending",
		"drain_delay", cfg.DrainDelay, "drain_timeout", cfg.DrainTimeout)
	<-time.After(cfg.DrainDelay) // the load balancer's health checks need this long; nothing to await here
	log.Info("drain delay over: closing listener and keep-alive connections, finishing in-flight requests")
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	errs := make(chan error, len(proxyServers))
	for _, srv := range proxyServers {
		go func() {
			err := srv.Shutdown(ctx)
			if err != nil {
				srv.Close()
			}
			errs <- err
		}()
	}
	var err error
	for range proxyServers {
		err = cmp.Or(err, <-errs)
	}
	if err != nil {
		log.Warn("in-flight requests did not finish within the drain timeout; their connections were closed",
			"drain_timeout", cfg.DrainTimeout, logging.KeyError, err)
		return
	}
	log.Info("drained", "took", time.Since(start).Round(time.Millisecond))
}

// kubeConfig finds the cluster: -kubeconfig, else the in-cluster service
// account, else $KUBECONFIG.
func kubeConfig(path string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	switch {
	case path != "":
		cfg, err = clientcmd.BuildConfigFromFlags("", path)
	default:
		cfg, err = rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) && os.Getenv(clientcmd.RecommendedConfigPathEnvVar) != "" {
			rules := &clientcmd.ClientConfigLoadingRules{Precedence: filepath.SplitList(os.Getenv(clientcmd.RecommendedConfigPathEnvVar))}
			cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
		} else if errors.Is(err, rest.ErrNotInCluster) {
			return nil, errors.New("no Kubernetes configuration: not running in a cluster, and neither -kubeconfig nor $KUBECONFIG is set")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes configuration: %w", err)
	}
	cfg.UserAgent = "bulkhead"
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

// detectDeadConnections makes client-go notice a silently dead connection
// to the API server (a partition, a frozen server) in about 15 s instead of
// about 45: it pings an HTTP/2 connection after 10 s without reads and gives
// up 5 s later. client-go reads these variables when it builds a transport;
// values set by the operator win.
func detectDeadConnections() {
	for name, value := range map[string]string{"HTTP2_READ_IDLE_TIMEOUT_SECONDS": "10", "HTTP2_PING_TIMEOUT_SECONDS": "5"} {
		if os.Getenv(name) == "" {
			os.Setenv(name, value)
		}
	}
}

// endpointView joins what Kubernetes says of each endpoint (the table) with
// what the router sees of it (breakers, in-flight requests). It runs per
// admin request, never on the traffic path.
func endpointView(routes *dataclient.Client, resilience *upstream.Upstream) admin.EndpointSource {
	return func() []admin.Backend {
		t, _ := routes.Table()
		out := make([]admin.Backend, 0, len(t.Backends))
		for _, b := range t.Backends {
			be := admin.Backend{Name: b.Key.String(), Endpoints: make([]admin.Endpoint, 0, len(b.Endpoints))}
			for _, ep := range b.Endpoints {
				st := resilience.Breakers().Snapshot(ep.Address)
				be.Endpoints = append(be.Endpoints, admin.Endpoint{
					Address: ep.Address, Ready: ep.Ready, Serving: ep.Serving, Terminating: ep.Terminating,
					Breaker: st.State, Requests: st.Requests, Failures: st.Failures, ConsecutiveFailures: st.ConsecutiveFailures,
					InFlight: st.InFlight,
				})
			}
			out = append(out, be)
		}
		return out
	}
}

// storeAdapter gives the data client the store's load in its own terms.
type storeAdapter struct{ *tablestore.Store }

func (a storeAdapter) Load() (routing.Table, time.Time, error) {
	t, meta, err := a.Store.Load()
	return t, meta.SavedAt, err
}

// electionNamespace is where the status Lease lives: the flag, else the
// pod's namespace (downward API or the service account's), else default.
func electionNamespace(flag string) string {
	if flag != "" {
		return flag
	}
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if data, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil && len(data) > 0 {
		return strings.TrimSpace(string(data))
	}
	return "default"
}

// electionIdentity names this replica in the election: the pod name when the
// downward API gives it, else the host name with the process id.
func electionIdentity() string {
	if name := os.Getenv("POD_NAME"); name != "" {
		return name
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s_%d", host, os.Getpid())
}

// buildInfo is the conventional constant-1 gauge carrying the version.
func buildInfo() prometheus.Collector {
	version := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = bi.Main.Version
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "bulkhead_build_info",
		Help:        "Always 1; the labels say which build is running.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	g.Set(1)
	return g
}

// servedChanges calls set with a table's Served list when it is not the
// previous table's: the data client hands over the same list while the
// served Ingresses stay the same (an endpoint change), and the status
// writer makes a set of it (10,000 names at 10,000 Ingresses) each time.
// tableWatchers calls each non-nil watcher with every applied table.
func tableWatchers(watchers ...func(routing.Table, bool)) func(routing.Table, bool) {
	return func(t routing.Table, live bool) {
		for _, w := range watchers {
			if w != nil {
				w(t, live)
			}
		}
	}
}

// gatewayStatusChanges passes on the Gateway API status of live tables
// when it is not the previous table's (an endpoint change keeps the
// table's status as it was). Tables from disk have none to pass.
func gatewayStatusChanges(set func([]routing.GatewayClassStatus, []routing.GatewayStatus, []routing.HTTPRouteStatus, []routing.GRPCRouteStatus)) func(routing.Table, bool) {
	var last routing.Table
	first := true
	same := func(t routing.Table) bool {
		return sameSlice(t.GatewayClasses, last.GatewayClasses) && sameSlice(t.Gateways, last.Gateways) && sameSlice(t.HTTPRoutes, last.HTTPRoutes) &&
			sameSlice(t.GRPCRoutes, last.GRPCRoutes)
	}
	return func(t routing.Table, live bool) {
		if !live {
			return
		}
		if first || !same(t) {
			set(t.GatewayClasses, t.Gateways, t.HTTPRoutes, t.GRPCRoutes)
		}
		first, last = false, t
	}
}

// sameSlice reports whether a and b are the same slice (not merely equal).
func sameSlice[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func servedChanges(set func([]types.NamespacedName)) func(routing.Table, bool) {
	var last []types.NamespacedName
	first := true
	return func(t routing.Table, _ bool) {
		same := len(t.Served) == len(last) && (len(last) == 0 || &t.Served[0] == &last[0])
		if first || !same {
			set(t.Served)
		}
		first, last = false, t.Served
	}
}

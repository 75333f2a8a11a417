package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/bulkhead-router/bulkhead/admin"
	"github.com/bulkhead-router/bulkhead/internal/logging"
	"github.com/bulkhead-router/bulkhead/routing"
)

// config is every setting of the router, parsed and validated once.
type config struct {
	Kubeconfig     string
	Address        string
	HealthAddress  string
	AdminAddress   string
	AdminTokenFile string
	AdminToken     []byte // from AdminTokenFile; never logged
	MetricsAddress string
	StateDir       string
	StateInterval  time.Duration
	RouteShards    int
	ControllerName string
	// Gateway API: served at all, the GatewayClass controllerName, and
	// which Gateway listener ports this router serves where.
	GatewayAPI        bool
	GatewayController string
	GatewayListeners  []gatewayListener
	GatewayAddresses  []netip.Addr
	PublishAddress    []string
	ElectionNS        string
	ElectionID        string
	GatewayElectID    string
	LogLevel          slog.Level
	LogFormat         string
	DrainDelay        time.Duration
	DrainTimeout      time.Duration
	NodeName          string
	WatchNode         bool
	SyncTimeout       time.Duration
	Reconnect         string
	RelistSpread      time.Duration
	GuardShare        float64
	GuardHold         time.Duration
	GuardMin          int
	GuardWindow       time.Duration

	ConnectTimeout        time.Duration
	ResponseHeaderTimeout time.Duration
	RequestTimeout        time.Duration
	RetryDeadline         time.Duration
	BackendIdleTimeout    time.Duration

	Edge edgeConfig

	// BackendTLS: trust toward pods served over TLS (backendtls.go).
	BackendTLS backendTLSConfig

	AccessLog accessLogConfig // accesslog.go
	Tracing   tracingConfig   // tracing.go

	// DefaultCertificate is the kubernetes.io/tls Secret served to TLS
	// handshakes no other certificate matches (tlsflags.go); zero: none.
	DefaultCertificate types.NamespacedName
}

// DefaultDrainDelay outlasts an ALB target group's default health check:
// a check every 30 s and 2 failures to call a target unhealthy. The first
// failing check comes at most 30 s after /readyz turns 503, the second 30 s
// later, so the ALB stops routing here at most 60 s after SIGTERM; 10 s more
// covers the time the ALB takes to act on it.
const DefaultDrainDelay = 70 * time.Second

// errHelp is returned for -help, which is not a failure.
var errHelp = flag.ErrHelp

// parseConfig parses args (without the program name). Errors are one line,
// meant to be printed as they are. On -help the usage is written to out.
func parseConfig(args []string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("bulkhead", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by the caller, in one line
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "path of a kubeconfig; empty: in-cluster configuration, then $KUBECONFIG")
	fs.StringVar(&c.Address, "address", ":8080", "HOST:PORT of the proxy listener (traffic)")
	fs.StringVar(&c.HealthAddress, "health-address", ":8081", "HOST:PORT serving GET /healthz (liveness) and GET /readyz (readiness)")
	fs.StringVar(&c.AdminAddress, "admin-address", "127.0.0.1:9911", "HOST:PORT of the operator endpoint (routes, status, POST /guard/confirm, profiler, metrics); on loopback (reach it with kubectl port-forward), else -admin-token-file is required")
	fs.StringVar(&c.AdminTokenFile, "admin-token-file", "", "file holding a bearer token (at least 16 characters) that every admin request must carry as Authorization: Bearer <token>; required when -admin-address is not a loopback address")
	fs.StringVar(&c.MetricsAddress, "metrics-address", ":9912", "HOST:PORT of the read-only metrics listener Prometheus scrapes: GET /metrics and nothing else")
	fs.StringVar(&c.StateDir, "state-dir", "/var/lib/bulkhead", "directory for local state (the last-known-good route table)")
	fs.DurationVar(&c.StateInterval, "state-write-interval", time.Second,
		"the stored table is written at most this often while the table keeps changing (a table after a quiet spell is written at once)")
	fs.IntVar(&c.RouteShards, "route-shards", 32,
		"skipper route tables the routes are split into by host (1 to 256); skipper rebuilds a whole table on any change, so an Ingress change costs a shard's rebuild; routes of wildcard and host-less rules and default backends are in every shard")
	fs.StringVar(&c.ControllerName, "controller-name", "bulkhead.io/ingress-controller", "spec.controller of the IngressClasses this router implements")
	fs.BoolVar(&c.GatewayAPI, "gateway-api", true, "serve the Gateway API (GatewayClass, Gateway, HTTPRoute, ReferenceGrant) when the API server has its CRDs; checked again every minute while it does not")
	fs.StringVar(&c.GatewayController, "gateway-controller-name", routing.DefaultGatewayControllerName, "spec.controllerName of the GatewayClasses this router implements")
	gatewayListen := fs.String("gateway-listeners", "80", "comma-separated Gateway listener ports this router serves: PORT (served on the proxy listener, -address) or PORT=HOST:PORT (a listener of its own); a Gateway listener on any other port is refused with PortUnavailable; empty: none")
	gatewayAddrs := fs.String("gateway-addresses", "", "comma-separated IPs of this router, one per Gateway: each Gateway gets one as its status address and answers only requests that arrive on it (bind the -gateway-listeners ports on all of them); empty: every Gateway shares -publish-address and Gateways are told apart by port and host")
	publish := fs.String("publish-address", "", "comma-separated IPs and/or hostnames written into the status of served Ingresses (for example the ALB's DNS name)")
	fs.StringVar(&c.ElectionNS, "election-namespace", "", "namespace of the Lease that elects the one replica writing Ingress status; empty: $POD_NAMESPACE, else the pod's own namespace, else default")
	fs.StringVar(&c.ElectionID, "election-id", "bulkhead-ingress-status", "name of that Lease")
	fs.StringVar(&c.GatewayElectID, "gateway-election-id", "bulkhead-gateway-status", "name of the Lease (in -election-namespace) that elects the one replica writing Gateway API status")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.Reconnect, "apiserver-reconnect", "resume", "when the API server is back after an outage: resume (keep the informers; watches resume where the server still has their history, else relist at a random moment within -apiserver-relist-spread) or restart (new informers on fresh connections at once, a full list from every router within about 2 s; kept for comparison)")
	fs.DurationVar(&c.RelistSpread, "apiserver-relist-spread", 5*time.Second, "after an outage, each router relists at a moment of its own drawn at random within this window, so a fleet does not list everything at once; 0: at once")
	fs.DurationVar(&c.SyncTimeout, "sync-timeout", 5*time.Second, "at start, how long to wait for the API server before serving the stored last-known-good table (an API server that does not answer at all is not waited for)")
	fs.Float64Var(&c.GuardShare, "deletion-guard-share", 0.5, "removing more than this share of the served Ingresses, of the served HTTPRoutes, or of the Services in use, within the window may be held (see -deletion-guard-min-objects); 1 disables the guard")
	fs.IntVar(&c.GuardMin, "deletion-guard-min-objects", 3, "deletions the API server announced are held only when at least this many objects of one kind go within the window (removals nobody announced, as after a relist, need no minimum)")
	fs.DurationVar(&c.GuardWindow, "deletion-guard-window", 10*time.Second, "removals within this long of the first one count as one burst")
	fs.DurationVar(&c.GuardHold, "deletion-guard-period", 2*time.Minute, "a held removal is applied this long after it was first held, whatever happens meanwhile (or at once: POST /guard/confirm on the admin endpoint)")
	fs.DurationVar(&c.DrainDelay, "drain-delay", DefaultDrainDelay, "on SIGTERM, how long /readyz fails while traffic is still served normally, so the load balancer takes this target out first (ALB defaults: see README)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 60*time.Second, "after the drain delay, how long in-flight requests may take to finish before the process exits")
	fs.StringVar(&c.NodeName, "node-name", os.Getenv("NODE_NAME"), "name of the Node this router runs on (downward API: spec.nodeName); default $NODE_NAME")
	fs.BoolVar(&c.WatchNode, "watch-node", true, "fail /readyz (without exiting) while this node is cordoned, tainted for deletion (cluster autoscaler, Karpenter) or excluded from external load balancers; needs -node-name")

	fs.DurationVar(&c.ConnectTimeout, "backend-connect-timeout", time.Second, "default time to connect to a pod before trying another (any method); per Ingress: annotation bulkhead.io/connect-timeout")
	fs.DurationVar(&c.ResponseHeaderTimeout, "backend-response-header-timeout", 30*time.Second, "default wait for a pod's response headers after sending the request, 0 for none; answered 504 (idempotent requests retried elsewhere first); per Ingress: bulkhead.io/response-header-timeout")
	fs.DurationVar(&c.RequestTimeout, "backend-request-timeout", 0, "default bound of a whole request, retries and response body included, 0 for none (streams and downloads); per Ingress: bulkhead.io/request-timeout")
	fs.DurationVar(&c.RetryDeadline, "backend-retry-deadline", 55*time.Second, "a retry is started only if a whole attempt (its response header timeout) still fits this long after the first attempt began; keep it below the load balancer's idle timeout (ALB: 60s)")
	fs.DurationVar(&c.BackendIdleTimeout, "backend-idle-timeout", 4*time.Second, "close keep-alive connections to pods idle this long; keep it below your pods' server idle timeout (Node.js 5s)")

	finishEdge := c.Edge.register(fs)
	finishBackendTLS := c.BackendTLS.register(fs)
	c.AccessLog.register(fs)
	c.Tracing.register(fs)
	defaultCert := fs.String("default-certificate", "", defaultCertificateHelp)

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs, out)
			return c, errHelp
		}
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (flags take the form -name value)", fs.Arg(0))
	}
	var err error
	if c.LogLevel, err = logging.ParseLevel(*level); err != nil {
		return c, fmt.Errorf("-log-level: %w", err)
	}
	if c.GatewayListeners, err = parseGatewayListeners(*gatewayListen, c.Address); err != nil {
		return c, fmt.Errorf("-gateway-listeners: %w", err)
	}
	if c.GatewayAddresses, err = parseAddressList(*gatewayAddrs); err != nil {
		return c, fmt.Errorf("-gateway-addresses: %w", err)
	}
	if c.PublishAddress, err = parsePublishAddresses(*publish); err != nil {
		return c, fmt.Errorf("-publish-address: %w", err)
	}
	if err := finishEdge(); err != nil {
		return c, err
	}
	if c.DefaultCertificate, err = parseSecretRef(*defaultCert); err != nil {
		return c, fmt.Errorf("-default-certificate: %w", err)
	}
	if err := c.validate(); err != nil {
		return c, err
	}
	if c.AdminTokenFile != "" {
		if c.AdminToken, err = admin.LoadToken(c.AdminTokenFile); err != nil {
			return c, fmt.Errorf("-admin-token-file: %w", err)
		}
	}
	if err := finishBackendTLS(); err != nil {
		return c, err
	}
	return c, nil
}

func (c config) validate() error {
	addrs := map[string]string{"-address": c.Address, "-health-address": c.HealthAddress, "-admin-address": c.AdminAddress, "-metrics-address": c.MetricsAddress}
	for _, name := range []string{"-address", "-health-address", "-admin-address", "-metrics-address"} {
		if err := validateListenAddress(addrs[name]); err != nil {
			return fmt.Errorf("%s %q: %w", name, addrs[name], err)
		}
	}
	if len(map[string]bool{c.Address: true, c.HealthAddress: true, c.AdminAddress: true, c.MetricsAddress: true}) != 4 {
		return errors.New("-address, -health-address, -admin-address and -metrics-address must be different")
	}
	for _, gl := range c.GatewayListeners {
		if gl.Address != "" && (gl.Address == c.HealthAddress || gl.Address == c.AdminAddress || gl.Address == c.MetricsAddress) {
			return fmt.Errorf("-gateway-listeners: port %d on %s: that address is the health, admin or metrics listener's", gl.Port, gl.Address)
		}
	}
	if c.GatewayElectID == c.ElectionID {
		return fmt.Errorf("-gateway-election-id %q: must differ from -election-id (each status writer leads on its own Lease)", c.GatewayElectID)
	}
	if msgs := validation.IsDomainPrefixedPath(nil, c.GatewayController); len(msgs) > 0 {
		return fmt.Errorf("-gateway-controller-name %q: %s", c.GatewayController, msgs[0].Detail)
	}
	// The admin endpoint can apply a held mass deletion and profile the
	// process: off loopback, only for whoever holds the token.
	if !isLoopback(c.AdminAddress) && c.AdminTokenFile == "" {
		return fmt.Errorf("-admin-address %q is not a loopback address: set -admin-token-file, or keep it on 127.0.0.1 and use kubectl port-forward", c.AdminAddress)
	}
	if msgs := validation.IsDomainPrefixedPath(nil, c.ControllerName); len(msgs) > 0 {
		return fmt.Errorf("-controller-name %q: %s", c.ControllerName, msgs[0].Detail)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("-log-format %q: want text or json", c.LogFormat)
	}
	if c.StateDir == "" {
		return errors.New("-state-dir must not be empty")
	}
	if c.StateInterval <= 0 {
		return fmt.Errorf("-state-write-interval %s: must be positive", c.StateInterval)
	}
	if c.RouteShards < 1 || c.RouteShards > 256 {
		return fmt.Errorf("-route-shards %d: want 1 to 256", c.RouteShards)
	}
	if c.SyncTimeout <= 0 {
		return fmt.Errorf("-sync-timeout %s: must be positive", c.SyncTimeout)
	}
	if c.Reconnect != "resume" && c.Reconnect != "restart" {
		return fmt.Errorf("-apiserver-reconnect %q: want resume or restart", c.Reconnect)
	}
	if c.RelistSpread < 0 {
		return fmt.Errorf("-apiserver-relist-spread %s: must not be negative", c.RelistSpread)
	}
	if c.GuardShare <= 0 || c.GuardShare > 1 {
		return fmt.Errorf("-deletion-guard-share %v: want a share above 0 and at most 1", c.GuardShare)
	}
	if c.GuardMin < 1 {
		return fmt.Errorf("-deletion-guard-min-objects %d: must be at least 1", c.GuardMin)
	}
	if c.GuardWindow <= 0 {
		return fmt.Errorf("-deletion-guard-window %s: must be positive", c.GuardWindow)
	}
	if c.GuardHold <= 0 {
		return fmt.Errorf("-deletion-guard-period %s: must be positive", c.GuardHold)
	}
	if c.ConnectTimeout <= 0 || c.ConnectTimeout > time.Minute {
		return fmt.Errorf("-backend-connect-timeout %s: want above 0 and at most 1m", c.ConnectTimeout)
	}
	if c.RetryDeadline <= 0 {
		return fmt.Errorf("-backend-retry-deadline %s: must be positive", c.RetryDeadline)
	}
	if c.ResponseHeaderTimeout < 0 || c.RequestTimeout < 0 {
		return errors.New("-backend-response-header-timeout and -backend-request-timeout must not be negative (0: none)")
	}
	if c.BackendIdleTimeout <= 0 {
		return fmt.Errorf("-backend-idle-timeout %s: must be positive", c.BackendIdleTimeout)
	}
	if c.DrainDelay < 0 || c.DrainTimeout < 0 {
		return errors.New("-drain-delay and -drain-timeout must not be negative")
	}
	return nil
}

func validateListenAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want HOST:PORT, for example :8080 or 127.0.0.1:9911")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	if host != "" && net.ParseIP(host) == nil && len(validation.IsDNS1123Subdomain(strings.ToLower(host))) > 0 {
		return fmt.Errorf("host %q is neither an IP address nor a host name", host)
	}
	return nil
}

// isLoopback reports whether a listen address binds loopback only: an IP
// in 127.0.0.0/8 or ::1, or localhost. An empty host binds every interface.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// parsePublishAddresses splits a comma-separated list of IPs and DNS names.
func parsePublishAddresses(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []string
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, errors.New("empty entry in the list")
		}
		if net.ParseIP(a) == nil && len(validation.IsDNS1123Subdomain(a)) > 0 {
			return nil, fmt.Errorf("%q is neither an IP address nor a DNS name", a)
		}
		out = append(out, a)
	}
	return out, nil
}

func printUsage(fs *flag.FlagSet, out io.Writer) {
	fmt.Fprintf(out, "Usage: bulkhead [flags]\n\nbulkhead is a resilient Kubernetes ingress edge router. Flags (with defaults):\n\n")
	fs.SetOutput(out)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// gatewayListener is a Gateway listener port this router serves, and where:
// Address "" is the proxy listener (-address).
type gatewayListener struct {
	Port    int32
	Address string
}

// parseGatewayListeners parses "PORT[=HOST:PORT],...". A port given the
// proxy listener's own address is served there.
func parseGatewayListeners(s, proxyAddress string) ([]gatewayListener, error) {
	var out []gatewayListener
	ports, addrs := map[int32]bool{}, map[string]bool{}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		portText, addr, _ := strings.Cut(item, "=")
		port, err := strconv.ParseUint(strings.TrimSpace(portText), 10, 16)
		if err != nil || port == 0 {
			return nil, fmt.Errorf("%q: want PORT or PORT=HOST:PORT, PORT from 1 to 65535", item)
		}
		gl := gatewayListener{Port: int32(port), Address: strings.TrimSpace(addr)}
		if gl.Address == proxyAddress {
			gl.Address = ""
		}
		if gl.Address != "" {
			if err := validateListenAddress(gl.Address); err != nil {
				return nil, fmt.Errorf("%q: %w", item, err)
			}
			if addrs[gl.Address] {
				return nil, fmt.Errorf("%q: %s serves another port already", item, gl.Address)
			}
			addrs[gl.Address] = true
		}
		if ports[gl.Port] {
			return nil, fmt.Errorf("port %d given twice", gl.Port)
		}
		if gl.Address == "" && addrs[""] {
			return nil, fmt.Errorf("%q: another port is served on the proxy listener already; give this one PORT=HOST:PORT", item)
		}
		if gl.Address == "" {
			addrs[""] = true
		}
		ports[gl.Port] = true
		out = append(out, gl)
	}
	return out, nil
}

// gatewayPorts are the Gateway listener ports served, for translation.
func (c config) gatewayPorts() []int32 {
	out := make([]int32, 0, len(c.GatewayListeners))
	for _, gl := range c.GatewayListeners {
		out = append(out, gl.Port)
	}
	return out
}

// proxyGatewayPort is the Gateway listener port served on the proxy
// listener; 0: none.
func (c config) proxyGatewayPort() int32 {
	for _, gl := range c.GatewayListeners {
		if gl.Address == "" {
			return gl.Port
		}
	}
	return 0
}

// parseAddressList parses comma-separated IP addresses, each once.
func parseAddressList(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP address", item)
		}
		if a = a.Unmap(); seen[a] {
			return nil, fmt.Errorf("%s given twice", a)
		}
		seen[a] = true
		out = append(out, a)
	}
	return out, nil
}

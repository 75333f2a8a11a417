package main

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/freeport"
	"github.com/bulkhead-router/bulkhead/internal/toolbuild"
)

// SkipperVersion is the stock skipper compared with bulkhead: the version
// bulkhead embeds, pinned in hack/peers/go.mod.
const SkipperVersion = "v0.27.57"

// proxyStartLimit bounds how long a proxy may take to serve both pods
// after it is started (bulkhead: control plane sync and first routes).
const proxyStartLimit = 60 * time.Second

//go:embed templates/*.tmpl
var templateFS embed.FS

var templates = template.Must(template.New("").Option("missingkey=error").ParseFS(templateFS, "templates/*.tmpl"))

// configData is what the configuration templates see.
type configData struct {
	Dir      string   // the instance's directory: pid file, logs, temp files
	Listen   string   // 127.0.0.1:PORT
	Backends []string // the two pods' ip:port
	// AccessLog, when set, is the file the proxy writes one line per
	// request to; empty: no access log.
	AccessLog string
}

// renderConfig fills one of templates/*.tmpl.
func renderConfig(name string, data configData) ([]byte, error) {
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, name, data); err != nil {
		return nil, fmt.Errorf("rendering %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// programs are the proxy binaries.
type programs struct {
	Bulkhead, Skipper, Nginx, HAProxy string
}

// findPrograms checks for the system packages and bulkhead's binary; wrk
// only when the HTTP throughput round runs (the gRPC round and the fault
// runs bring their own load).
func findPrograms(bulkhead string, needWrk bool) (programs, error) {
	var p programs
	var missing []string
	tools := []struct {
		name string
		dst  *string
	}{{"nginx", &p.Nginx}, {"haproxy", &p.HAProxy}, {"taskset", new(string)}}
	if needWrk {
		tools = append(tools, struct {
			name string
			dst  *string
		}{"wrk", new(string)})
	}
	for _, tool := range tools {
		path, err := exec.LookPath(tool.name)
		if err != nil {
			missing = append(missing, tool.name)
			continue
		}
		*tool.dst = path
	}
	if len(missing) > 0 {
		return p, fmt.Errorf("missing %s: run hack/install-deps.sh bench (as root)", strings.Join(missing, ", "))
	}
	abs, err := filepath.Abs(bulkhead)
	if err == nil {
		_, err = os.Stat(abs)
	}
	if err != nil {
		return p, fmt.Errorf("bulkhead binary %s: %w (run make build first)", bulkhead, err)
	}
	p.Bulkhead = abs
	return p, nil
}

// ensureSkipper builds stock skipper from the Go module proxy once and
// returns its path; later runs take it from the cache.
func ensureSkipper(ctx context.Context) (string, error) {
	dir, err := toolbuild.Ensure(ctx, toolbuild.Spec{
		Name:      "peers-skipper-" + SkipperVersion,
		ModuleDir: filepath.Join("hack", "peers"),
		Programs:  map[string]string{"skipper": "github.com/zalando/skipper/cmd/skipper"},
		LDFlags:   "-s -w",
		What:      "stock skipper " + SkipperVersion,
		Expect:    "about 2 minutes on 2 cores",
	}, os.Stderr)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "skipper"), nil
}

// instance is what starting one proxy needs.
type instance struct {
	Dir        string // created for this instance
	CPU        int
	Listen     string // 127.0.0.1:PORT
	Upstream   upstream
	Programs   programs
	Kubeconfig string
}

// peer is one proxy under test.
type peer struct {
	Name string
	// Start runs the proxy and returns once its process runs; awaitServing
	// tells when it serves.
	Start func(in instance) (*process, error)
	// LogOf, for a proxy run with its access log on, names the same
	// proxy with it off: the report gives the ratio of the two, the cost
	// of the log. Such a run is left out of the fault runs, which measure
	// retries, not logging.
	LogOf string
}

// accessLogFile is where a log-on peer writes its lines, in its instance
// directory (on disk: the work directory is under os.TempDir, which is
// not a tmpfs on the machines this runs on; the report says the file's
// size).
const accessLogFile = "access.log"

// logSuffix names the log-on variant of a proxy.
const logSuffix = "+log"

// goEnv gives Go proxies one P, as nginx gets one worker and HAProxy one
// thread. (The runtime would also derive 1 from the CPU mask; saying it
// keeps the comparison explicit.)
var goEnv = []string{"GOMAXPROCS=1"}

// peers are the proxies of a run, bulkhead first: it is the reference the
// others' ratios are taken to.
// Each proxy that has an access log runs twice, off and on, side by side
// in the same rounds, so the cost of the log is measured on the same
// machine in the same minutes as the rest. HAProxy's log goes to syslog
// only (no file of its own), so it runs with its log off alone.
var peers = []peer{
	{Name: "bulkhead", Start: func(in instance) (*process, error) { return startBulkhead(in, false) }},
	{Name: "bulkhead" + logSuffix, Start: func(in instance) (*process, error) { return startBulkhead(in, true) }, LogOf: "bulkhead"},
	{Name: "nginx", Start: func(in instance) (*process, error) { return startNginx(in, false) }},
	{Name: "nginx" + logSuffix, Start: func(in instance) (*process, error) { return startNginx(in, true) }, LogOf: "nginx"},
	{Name: "haproxy", Start: startHAProxy},
	{Name: "skipper", Start: func(in instance) (*process, error) { return startSkipper(in, false) }},
	{Name: "skipper" + logSuffix, Start: func(in instance) (*process, error) { return startSkipper(in, true) }, LogOf: "skipper"},
}

// startBulkhead runs bulkhead; logOn: its access log with its defaults
// (every request, JSON, every field but the query) to a file, else
// -access-log=false.
func startBulkhead(in instance, logOn bool) (*process, error) {
	ports, err := freeport.Get(3)
	if err != nil {
		return nil, err
	}
	admin := fmt.Sprintf("127.0.0.1:%d", ports[1])
	args := []string{
		in.Programs.Bulkhead,
		"-kubeconfig", in.Kubeconfig,
		"-address", in.Listen,
		"-health-address", fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"-admin-address", admin,
		"-metrics-address", fmt.Sprintf("127.0.0.1:%d", ports[2]),
		"-state-dir", filepath.Join(in.Dir, "state"),
		// No load balancer in front: stop at once on SIGTERM.
		"-drain-delay", "0s",
		// warn keeps its own log as quiet as the peers' error logs.
		"-log-level", "warn",
	}
	if logOn {
		args = append(args, "-access-log-file", filepath.Join(in.Dir, accessLogFile))
	} else {
		args = append(args, "-access-log=false")
	}
	p, err := startPinned("bulkhead", filepath.Join(in.Dir, "bulkhead.log"), in.CPU, goEnv, args...)
	if p != nil {
		p.admin = admin
	}
	return p, err
}

// startNginx runs nginx; logOn: access_log to a file in a JSON format
// with the fields bulkhead's line has (templates/nginx.conf.tmpl).
func startNginx(in instance, logOn bool) (*process, error) {
	conf, err := writeConfig(in, "nginx.conf.tmpl", "nginx.conf", logOn)
	if err != nil {
		return nil, err
	}
	// -e: nginx writes to its compiled-in error log before it reads the
	// configuration; keep even that in the instance directory.
	return startPinned("nginx", filepath.Join(in.Dir, "nginx.out"), in.CPU, nil,
		in.Programs.Nginx, "-p", in.Dir, "-e", filepath.Join(in.Dir, "error.log"), "-c", conf)
}

func startHAProxy(in instance) (*process, error) {
	conf, err := writeConfig(in, "haproxy.cfg.tmpl", "haproxy.cfg", false)
	if err != nil {
		return nil, err
	}
	// -db: stay in the foreground, so the process is HAProxy itself.
	return startPinned("haproxy", filepath.Join(in.Dir, "haproxy.out"), in.CPU, nil,
		in.Programs.HAProxy, "-db", "-f", conf)
}

// startSkipper runs stock skipper; logOn: its access log in JSON
// (-access-log-json-enabled) to a file, else -access-log-disabled.
func startSkipper(in instance, logOn bool) (*process, error) {
	routes, err := writeConfig(in, "routes.eskip.tmpl", "routes.eskip", false)
	if err != nil {
		return nil, err
	}
	accessLog := []string{"-access-log-disabled"}
	if logOn {
		accessLog = []string{"-access-log", filepath.Join(in.Dir, accessLogFile), "-access-log-json-enabled"}
	}
	return startPinned("skipper", filepath.Join(in.Dir, "skipper.log"), in.CPU, goEnv, append([]string{
		in.Programs.Skipper,
		"-address", in.Listen,
		"-routes-file", routes,
		"-wait-first-route-load",
		// No metrics, like bulkhead (which hands skipper's proxy a no-op
		// metrics sink): both listeners empty turns metrics off, and
		// -disable-metrics-compat drops the per-route ones.
		"-application-log-level", "WARN",
		"-support-listener", "",
		"-metrics-listener", "",
		"-disable-metrics-compat",
		// The same request reaches the pod as through bulkhead: the
		// client's Host and the forwarded headers.
		"-proxy-preserve-host",
		"-forwarded-headers", "X-Forwarded-For,X-Forwarded-Host,X-Forwarded-Proto=http",
	}, accessLog...)...)
}

// writeConfig renders a template into the instance directory; accessLog:
// with the access log on, to accessLogFile there.
func writeConfig(in instance, tmpl, file string, accessLog bool) (string, error) {
	data := configData{Dir: in.Dir, Listen: in.Listen, Backends: in.Upstream.Addrs()}
	if accessLog {
		data.AccessLog = filepath.Join(in.Dir, accessLogFile)
	}
	out, err := renderConfig(tmpl, data)
	if err != nil {
		return "", err
	}
	path := filepath.Join(in.Dir, file)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// versions names what ran, for the report.
func versions(ctx context.Context, p programs) map[string]string {
	first := func(name string, args ...string) string {
		out, _ := exec.CommandContext(ctx, name, args...).CombinedOutput()
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return line
	}
	v := map[string]string{
		"nginx":   strings.TrimPrefix(first(p.Nginx, "-v"), "nginx version: "),
		"haproxy": haproxyVersion(first(p.HAProxy, "-v")),
		"wrk":     wrkVersion(ctx),
		"skipper": SkipperVersion + " (stock, built from the Go module proxy)",
	}
	commit := first("git", "rev-parse", "--short", "HEAD")
	if out, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
		commit += " with local changes"
	}
	v["bulkhead"] = commit
	return v
}

// haproxyVersion takes the version out of "HAProxy version 2.6.12-1+deb12u4
// 2026/10/17 - https://haproxy.org/".
func haproxyVersion(line string) string {
	if f := strings.Fields(line); len(f) >= 3 && f[1] == "version" {
		return f[2]
	}
	return line
}

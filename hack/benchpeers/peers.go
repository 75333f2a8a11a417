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
}

// goEnv gives Go proxies one P, as nginx gets one worker and HAProxy one
// thread. (The runtime would also derive 1 from the CPU mask; saying it
// keeps the comparison explicit.)
var goEnv = []string{"GOMAXPROCS=1"}

// peers are the proxies of a run, bulkhead first: it is the reference the
// others' ratios are taken to.
var peers = []peer{
	{Name: "bulkhead", Start: startBulkhead},
	{Name: "nginx", Start: startNginx},
	{Name: "haproxy", Start: startHAProxy},
	{Name: "skipper", Start: startSkipper},
}

func startBulkhead(in instance) (*process, error) {
	ports, err := freeport.Get(3)
	if err != nil {
		return nil, err
	}
	admin := fmt.Sprintf("127.0.0.1:%d", ports[1])
	p, err := startPinned("bulkhead", filepath.Join(in.Dir, "bulkhead.log"), in.CPU, goEnv,
		in.Programs.Bulkhead,
		"-kubeconfig", in.Kubeconfig,
		"-address", in.Listen,
		"-health-address", fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"-admin-address", admin,
		"-metrics-address", fmt.Sprintf("127.0.0.1:%d", ports[2]),
		"-state-dir", filepath.Join(in.Dir, "state"),
		// No load balancer in front: stop at once on SIGTERM.
		"-drain-delay", "0s",
		// bulkhead has no access log; warn keeps its log as quiet as the
		// peers' error logs.
		"-log-level", "warn",
	)
	if p != nil {
		p.admin = admin
	}
	return p, err
}

func startNginx(in instance) (*process, error) {
	conf, err := writeConfig(in, "nginx.conf.tmpl", "nginx.conf")
	if err != nil {
		return nil, err
	}
	// -e: nginx writes to its compiled-in error log before it reads the
	// configuration; keep even that in the instance directory.
	return startPinned("nginx", filepath.Join(in.Dir, "nginx.out"), in.CPU, nil,
		in.Programs.Nginx, "-p", in.Dir, "-e", filepath.Join(in.Dir, "error.log"), "-c", conf)
}

func startHAProxy(in instance) (*process, error) {
	conf, err := writeConfig(in, "haproxy.cfg.tmpl", "haproxy.cfg")
	if err != nil {
		return nil, err
	}
	// -db: stay in the foreground, so the process is HAProxy itself.
	return startPinned("haproxy", filepath.Join(in.Dir, "haproxy.out"), in.CPU, nil,
		in.Programs.HAProxy, "-db", "-f", conf)
}

func startSkipper(in instance) (*process, error) {
	routes, err := writeConfig(in, "routes.eskip.tmpl", "routes.eskip")
	if err != nil {
		return nil, err
	}
	return startPinned("skipper", filepath.Join(in.Dir, "skipper.log"), in.CPU, goEnv,
		in.Programs.Skipper,
		"-address", in.Listen,
		"-routes-file", routes,
		"-wait-first-route-load",
		// No access log and no metrics, like bulkhead (which hands skipper's
		// proxy a no-op metrics sink): both listeners empty turns metrics
		// off, and -disable-metrics-compat drops the per-route ones.
		"-access-log-disabled",
		"-application-log-level", "WARN",
		"-support-listener", "",
		"-metrics-listener", "",
		"-disable-metrics-compat",
		// The same request reaches the pod as through bulkhead: the
		// client's Host and the forwarded headers.
		"-proxy-preserve-host",
		"-forwarded-headers", "X-Forwarded-For,X-Forwarded-Host,X-Forwarded-Proto=http",
	)
}

// writeConfig renders a template into the instance directory.
func writeConfig(in instance, tmpl, file string) (string, error) {
	data, err := renderConfig(tmpl, configData{Dir: in.Dir, Listen: in.Listen, Backends: in.Upstream.Addrs()})
	if err != nil {
		return "", err
	}
	path := filepath.Join(in.Dir, file)
	if err := os.WriteFile(path, data, 0o644); err != nil {
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

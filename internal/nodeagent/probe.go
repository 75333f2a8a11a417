package nodeagent

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead-router/bulkhead/internal/podnet"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// runProbes runs the container's startup, then liveness and readiness
// probes until ctx ends. A startup or liveness failure is sent on
// unhealthy (once); readiness sets the container's ready flag.
func (c *container) runProbes(ctx context.Context, proc *podnet.Process, unhealthy chan<- string) {
	s := c.spec
	if s.StartupProbe != nil {
		ok := c.probeLoop(ctx, "startup", s.StartupProbe, func(bool) {}, true)
		if ctx.Err() != nil {
			return
		}
		if !ok {
			unhealthy <- "failed startup probe"
			return
		}
		c.set(func() {
			c.started = true
			if s.ReadinessProbe == nil {
				c.ready = true
			}
		})
	}
	if s.ReadinessProbe != nil {
		go c.probeLoop(ctx, "readiness", s.ReadinessProbe, func(ok bool) {
			c.set(func() { c.ready = ok })
		}, false)
	}
	if s.LivenessProbe != nil {
		if !c.probeLoop(ctx, "liveness", s.LivenessProbe, func(bool) {}, true) && ctx.Err() == nil {
			unhealthy <- "failed liveness probe"
		}
	}
}

// probeLoop probes every periodSeconds after initialDelaySeconds and
// reports each change of the thresholded result through set. With
// stopOnFailure it returns false at the failure threshold, and for a
// startup probe (first success ends it, when stopOnFailure and the
// kind is startup) true at the first success.
func (c *container) probeLoop(ctx context.Context, kind string, p *corev1.Probe, set func(bool), stopOnFailure bool) bool {
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	successes, failures := int32(0), int32(0)
	successThreshold, failureThreshold := max(p.SuccessThreshold, 1), max(p.FailureThreshold, 1)
	state := kind != "readiness" // liveness starts healthy, readiness not ready
	if d := time.Duration(p.InitialDelaySeconds) * time.Second; d > 0 {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
		}
	}
	ticker := time.NewTicker(period)
	defer ticker.Stop()
	for {
		err := c.probeOnce(ctx, p, timeout)
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			successes, failures = successes+1, 0
			if kind == "startup" {
				return true
			}
			if !state && successes >= successThreshold {
				state = true
				set(true)
			}
		} else {
			successes, failures = 0, failures+1
			if failures == 1 || failures == failureThreshold {
				c.runner.event(corev1.EventTypeWarning, "Unhealthy",
					fmt.Sprintf("%s%s probe failed: %v", strings.ToUpper(kind[:1]), kind[1:], err))
			}
			if failures >= failureThreshold {
				if stopOnFailure {
					return false
				}
				if state {
					state = false
					set(false)
				}
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-ticker.C:
		}
	}
}

// probeOnce runs one probe from the root namespace against the pod's
// address, as kubelet probes from the node.
func (c *container) probeOnce(ctx context.Context, p *corev1.Probe, timeout time.Duration) error {
	r := c.runner
	r.mu.Lock()
	podIP := r.net.IP
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.HTTPGet != nil:
		return c.httpGet(ctx, p.HTTPGet, podIP, false)
	case p.TCPSocket != nil:
		port, err := c.resolvePort(p.TCPSocket.Port)
		if err != nil {
			return err
		}
		host := podIP.String()
		if p.TCPSocket.Host != "" {
			host = p.TCPSocket.Host
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	case p.Exec != nil:
		out, err := r.execInPod(ctx, p.Exec.Command)
		if err != nil {
			return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	case p.GRPC != nil:
		return fmt.Errorf("gRPC probes are not supported by the bulkhead node agent")
	}
	return fmt.Errorf("probe has no handler")
}

// httpGet is an HTTP GET probe or hook. A probe succeeds on a status in
// [200, 400); redirects are not followed (kubelet follows only those to
// the same host, and reports others as success). A hook succeeds on any
// answer, as kubelet's handler runner only reports transport errors.
func (c *container) httpGet(ctx context.Context, g *corev1.HTTPGetAction, podIP netip.Addr, hook bool) error {
	port, err := c.resolvePort(g.Port)
	if err != nil {
		return err
	}
	host := podIP.String()
	if g.Host != "" {
		host = g.Host
	}
	scheme := "http"
	if g.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		scheme+"://"+net.JoinHostPort(host, strconv.Itoa(port))+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "kube-probe/1.36")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
		} else {
			req.Header.Add(h.Name, h.Value)
		}
	}
	client := &http.Client{
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if hook || (resp.StatusCode >= 200 && resp.StatusCode < 400) {
		return nil
	}
	return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
}

// resolvePort turns a number or a container port name into a number.
func (c *container) resolvePort(p intstr.IntOrString) (int, error) {
	if p.Type == intstr.Int {
		if p.IntVal < 1 || p.IntVal > 65535 {
			return 0, fmt.Errorf("port %d out of range", p.IntVal)
		}
		return int(p.IntVal), nil
	}
	for _, cp := range c.spec.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("port name %q is not a port of container %s", p.StrVal, c.spec.Name)
}
